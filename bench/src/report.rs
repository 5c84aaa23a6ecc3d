//! The table and the notes under it, from the measured rows: each scenario's figures against its
//! baseline and floors, as ratios (absolute times on a shared machine are noisy).

use std::fmt::Write as _;
use std::time::Duration;

use crate::load::Outcome;

/// Scenario b's concurrent callers.
pub const CALLERS: usize = 50;
/// The trivial responder: the ceiling of any server here.
pub const CEILING: &str = "e. trivial responder (GET /ping)";
/// Scenario a's baseline and lightest read.
pub const BARE_HELLO: &str = "a. bare async-graphql { hello }";
pub const TYPENAME: &str = "a. { __typename } with an API key";
pub const DASHBOARD_READ: &str = "a. me + 20 tools";
/// The dashboard read's shape answered by the bare framework from memory: the floor of the hub's.
pub const BARE_DASHBOARD: &str = "a. bare async-graphql, the dashboard's shape from memory";
pub const INVOKE_DIRECT: &str = "b. upstream directly";
pub const INVOKE_VIA_HUB: &str = "b. invokeTool via the hub";
pub const INVOKE_RELAY: &str = "b. bare async-graphql relaying the call";
/// The same relay answering once the call's usage row is durable: the floor under the metering rule.
pub const INVOKE_METERED_RELAY: &str = "b. bare async-graphql relaying the call, metered durably";
/// Scenario f's rows, followed by the streams' length.
pub const STREAM_DIRECT: &str = "f. stream directly";
pub const STREAM_VIA_HUB: &str = "f. invokeToolStream via the hub";
/// The same events from the bare framework, built in memory: the floor of the hub's streaming.
pub const STREAM_BARE: &str = "f. bare async-graphql streaming from memory";
pub const STREAM_RELAY: &str = "f. bare async-graphql relaying the upstream's stream";

/// One row of the table.
pub struct Row {
    pub scenario: String,
    pub connections: usize,
    pub mode: String,
    pub outcome: Outcome,
    pub rss_mib: f64,
    /// CPU seconds of the server and of its PostgreSQL during the measured part.
    pub cpu_seconds: (f64, f64),
    /// The share of the machine's CPU time its host took during the measured part.
    pub stolen: f64,
}

pub fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

impl Row {
    pub fn p(&self, quantile: f64) -> f64 {
        ms(self.outcome.accepted.value_at_quantile(quantile))
    }
}

pub fn render(rows: &[Row], measured: Duration, warmup: Duration, hub_log: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Measured {} s per scenario after {} s of warm-up, the server logging at `{}`. req/s counts every answer, ok/s the accepted ones; p50/p99/p99.9 are the accepted answers' latencies in ms (refusals have their own p99); errors are failed answers (of them 5xx); RSS is the answering process's peak resident memory during the scenario (the hub's, or for the bare rows the bare server's; PostgreSQL not included); CPU ms/req is the CPU time the answering process and, apart, the hub's PostgreSQL used per answer while measured (less noisy than latencies on a shared machine: time the CPU was taken away is not counted; the upstream rows show the idle hub's). Login clients wait the `retryAfter` of a refusal before their next attempt.\n",
        measured.as_secs(),
        warmup.as_secs(),
        hub_log
    );
    let _ = writeln!(
        out,
        "| scenario | conns | loop | req/s | ok/s | p50 | p99 | p99.9 | errors (5xx) | refused (p99) | RSS MiB | CPU ms/req server + PG |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for row in rows {
        let refused = if row.outcome.refused.is_empty() {
            "0".to_owned()
        } else {
            format!(
                "{} ({:.1})",
                row.outcome.refused.len(),
                ms(row.outcome.refused.value_at_quantile(0.99))
            )
        };
        let answers = row.outcome.rps() * measured.as_secs_f64();
        let per_answer = |seconds: f64| {
            if answers > 0.0 {
                1000.0 * seconds / answers
            } else {
                0.0
            }
        };
        let (server_cpu, postgres_cpu) = row.cpu_seconds;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} ({}) | {} | {:.0} | {:.3} + {:.3} |",
            row.scenario,
            row.connections,
            row.mode,
            row.outcome.rps(),
            row.outcome.accepted_rps(),
            row.p(0.5),
            row.p(0.99),
            row.p(0.999),
            row.outcome.errors,
            row.outcome.server_errors,
            refused,
            row.rss_mib,
            per_answer(server_cpu),
            per_answer(postgres_cpu)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", stolen_note(rows));
    read_notes(&mut out, rows);
    stream_notes(&mut out, rows);
    invocation_notes(&mut out, rows);
    out
}

/// Scenario a's notes: the reads against the ceiling and the bare framework, and how p99 scales.
fn read_notes(out: &mut String, rows: &[Row]) {
    let ceiling = find(rows, CEILING, 64, "closed");
    if let (Some(ceiling), Some(dashboard)) = (ceiling, find(rows, DASHBOARD_READ, 64, "closed")) {
        let _ = writeln!(
            out,
            "- a. dashboard read at 64 connections: {:.1}% of the trivial responder's throughput.",
            100.0 * dashboard.outcome.rps() / ceiling.outcome.rps()
        );
    }
    if let Some(bare) = find(rows, BARE_HELLO, 64, "closed") {
        for (read, target) in [(TYPENAME, 0.6), (DASHBOARD_READ, 0.3)] {
            if let Some(row) = find(rows, read, 64, "closed") {
                let _ = writeln!(
                    out,
                    "- {read}, 64 connections: {:.2} of the bare framework's {{ hello }} ({:.0} against {:.0} req/s; target at least {target}).",
                    row.outcome.rps() / bare.outcome.rps().max(1.0),
                    row.outcome.rps(),
                    bare.outcome.rps()
                );
            }
        }
    }
    if let (Some(bare), Some(floor), Some(dashboard)) = (
        find(rows, BARE_HELLO, 64, "closed"),
        find(rows, BARE_DASHBOARD, 64, "closed"),
        find(rows, DASHBOARD_READ, 64, "closed"),
    ) {
        let _ = writeln!(
            out,
            "- a. floor of the dashboard read: the bare framework answers its shape from memory at {:.2} of its {{ hello }} ({:.0} req/s); the hub's me + 20 tools reaches {:.2} of that floor.",
            floor.outcome.rps() / bare.outcome.rps().max(1.0),
            floor.outcome.rps(),
            dashboard.outcome.rps() / floor.outcome.rps().max(1.0)
        );
    }
    for mode in ["closed", "open"] {
        if let (Some(small), Some(large)) = (
            find(rows, DASHBOARD_READ, 64, mode),
            find(rows, DASHBOARD_READ, 1000, mode),
        ) {
            let _ = writeln!(
                out,
                "- a. {mode} loop: p99 at 1000 connections is {:.2}x the p99 at 64 (target: at most 2x).",
                large.p(0.99) / small.p(0.99)
            );
        }
    }
}

/// Scenario f's notes: what the hub adds to a stream, against each floor.
fn stream_notes(out: &mut String, rows: &[Row]) {
    let metered = find(rows, INVOKE_VIA_HUB, CALLERS, "closed");
    for direct in rows
        .iter()
        .filter(|r| r.scenario.starts_with(STREAM_DIRECT))
    {
        let via_hub = direct.scenario.replacen(STREAM_DIRECT, STREAM_VIA_HUB, 1);
        let Some(hub) = rows
            .iter()
            .find(|r| r.scenario == via_hub && r.connections == direct.connections)
        else {
            continue;
        };
        let share = |chunks_per_second: f64| {
            100.0 * chunks_per_second / direct.outcome.chunks_per_second().max(1.0)
        };
        let _ = write!(
            out,
            "- {}, {} connection(s): the hub adds {:.2} ms to the first chunk at p50 and {:.2} ms at p99 (target at one caller: under 2 ms at p99); {:.0} chunks/s through the hub against {:.0} directly, {:.1}% (target at {CALLERS}: at least 25%).",
            direct.scenario,
            direct.connections,
            hub.p(0.5) - direct.p(0.5),
            hub.p(0.99) - direct.p(0.99),
            hub.outcome.chunks_per_second(),
            direct.outcome.chunks_per_second(),
            share(hub.outcome.chunks_per_second())
        );
        // Passing each chunk as an event of its own through the framework bounds the chunks' rate;
        // reading the upstream's stream as well bounds it further: the floor of relaying.
        for (floor, what) in [
            (
                STREAM_BARE,
                "Framework: the bare framework streams the same events from memory at",
            ),
            (
                STREAM_RELAY,
                "Relay floor: the bare framework relaying the upstream's stream passes",
            ),
        ] {
            let floor = direct.scenario.replacen(STREAM_DIRECT, floor, 1);
            if let Some(floor) = rows
                .iter()
                .find(|r| r.scenario == floor && r.connections == direct.connections)
            {
                let _ = write!(
                    out,
                    " {what} {:.0} chunks/s, {:.1}% of direct; the hub reached {:.0}% of that.",
                    floor.outcome.chunks_per_second(),
                    share(floor.outcome.chunks_per_second()),
                    100.0 * hub.outcome.chunks_per_second()
                        / floor.outcome.chunks_per_second().max(1.0)
                );
            }
        }
        // Each stream is one metered invocation: invokeTool's rate in this run bounds the streams'.
        if let Some(metered) = metered.filter(|_| direct.connections == CALLERS) {
            let chunks_per_stream = hub.outcome.chunks_per_second() / hub.outcome.rps().max(1.0);
            let _ = write!(
                out,
                " Metering floor: invokeTool did {:.0} calls/s at {CALLERS} callers in this run, so streams of {:.0} chunks cannot pass more than {:.0} chunks/s, {:.1}% of direct; the hub reached {:.0}% of that.",
                metered.outcome.rps(),
                chunks_per_stream,
                metered.outcome.rps() * chunks_per_stream,
                share(metered.outcome.rps() * chunks_per_stream),
                100.0 * hub.outcome.rps() / metered.outcome.rps().max(1.0)
            );
        }
        let _ = writeln!(out);
    }
}

/// Scenario b's notes: what the hub adds to a call, against the relay floors at the same load.
fn invocation_notes(out: &mut String, rows: &[Row]) {
    for direct in rows.iter().filter(|r| r.scenario == INVOKE_DIRECT) {
        if let Some(hub) = rows.iter().find(|r| {
            r.scenario == INVOKE_VIA_HUB
                && r.connections == direct.connections
                && r.mode == direct.mode
        }) {
            let _ = write!(
                out,
                "- b. {} connection(s), {} loop: the hub adds {:.2} ms at p50 and {:.2} ms at p99; throughput {:.1}% of the upstream's.",
                direct.connections,
                direct.mode,
                hub.p(0.5) - direct.p(0.5),
                hub.p(0.99) - direct.p(0.99),
                100.0 * hub.outcome.rps() / direct.outcome.rps()
            );
            // Relaying the call through the framework with the hub's HTTP client bounds the hub's rate;
            // writing each call's usage row durably (group commit) as well bounds it further.
            for (floor, what) in [
                (
                    INVOKE_RELAY,
                    "Relay floor: the bare framework relaying the call",
                ),
                (
                    INVOKE_METERED_RELAY,
                    "Metered relay floor: the same relay writing each call's usage row durably (group commit, one row per call, nothing else)",
                ),
            ] {
                let Some(relay) = rows.iter().find(|r| {
                    r.scenario == floor
                        && r.connections == direct.connections
                        && r.mode == direct.mode
                }) else {
                    continue;
                };
                if direct.mode.starts_with("open") {
                    // On an open loop every server answers the whole rate: latency is the measure.
                    let _ = write!(
                        out,
                        " {what} adds {:.2} ms at p50 and {:.2} ms at p99 at the same rate; the hub's added p99 is {:.2} ms above it.",
                        relay.p(0.5) - direct.p(0.5),
                        relay.p(0.99) - direct.p(0.99),
                        hub.p(0.99) - relay.p(0.99)
                    );
                } else {
                    let _ = write!(
                        out,
                        " {what} answers {:.0} calls/s, {:.1}% of the upstream's, adding {:.2} ms at p99; the hub reached {:.0}% of its throughput.",
                        relay.outcome.rps(),
                        100.0 * relay.outcome.rps() / direct.outcome.rps(),
                        relay.p(0.99) - direct.p(0.99),
                        100.0 * hub.outcome.rps() / relay.outcome.rps().max(1.0)
                    );
                }
            }
            let _ = writeln!(out);
        }
    }
}

fn find<'a>(rows: &'a [Row], scenario: &str, connections: usize, mode: &str) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.scenario == scenario && r.connections == connections && r.mode.starts_with(mode)
    })
}

/// Rows during which this machine's host took at least this share of its CPU time.
const STOLEN_NOTED: f64 = 0.01;

/// Which rows ran while the host took CPU time from this machine (`steal` in `/proc/stat`): every
/// process here stops then, so their latencies are not the server's alone.
fn stolen_note(rows: &[Row]) -> String {
    let taken: Vec<String> = rows
        .iter()
        .filter(|row| row.stolen >= STOLEN_NOTED)
        .map(|row| {
            format!(
                "{} at {} {} ({:.0}%)",
                row.scenario,
                row.connections,
                row.mode,
                100.0 * row.stolen
            )
        })
        .collect();
    if taken.is_empty() {
        format!(
            "- The machine's host took under {:.0}% of its CPU time in every row.",
            100.0 * STOLEN_NOTED
        )
    } else {
        format!(
            "- The machine's host took CPU time from it (every process here stopped meanwhile) during: {}.",
            taken.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use hdrhistogram::Histogram;

    use super::*;

    /// A row answering `rps` calls in one second, every one in `latency_ms`.
    fn row(scenario: &str, connections: usize, mode: &str, rps: u64, latency_ms: f64) -> Row {
        let mut accepted = Histogram::new_with_bounds(1, 120_000_000, 3).expect("bounds");
        accepted
            .record_n((latency_ms * 1000.0) as u64, rps)
            .expect("recorded");
        Row {
            scenario: scenario.to_owned(),
            connections,
            mode: mode.to_owned(),
            outcome: Outcome {
                accepted,
                refused: Histogram::new_with_bounds(1, 120_000_000, 3).expect("bounds"),
                errors: 0,
                server_errors: 0,
                first_error: None,
                elapsed: Duration::from_secs(1),
                chunks: 0,
            },
            rss_mib: 0.0,
            cpu_seconds: (0.0, 0.0),
            stolen: 0.0,
        }
    }

    fn notes(rows: &[Row]) -> String {
        let mut out = String::new();
        invocation_notes(&mut out, rows);
        out
    }

    #[test]
    fn an_open_loop_is_compared_with_the_metered_relay_at_the_same_rate_by_latency() {
        let rows = [
            row(INVOKE_DIRECT, CALLERS, "open 500/s", 500, 0.3),
            row(INVOKE_VIA_HUB, CALLERS, "open 500/s", 500, 2.3),
            row(INVOKE_METERED_RELAY, CALLERS, "open 500/s", 500, 1.3),
            row(INVOKE_METERED_RELAY, CALLERS, "open 250/s", 250, 9.0),
        ];
        let out = notes(&rows);
        assert!(
            out.contains("- b. 50 connection(s), open 500/s loop: the hub adds 2.00 ms at p50 and 2.00 ms at p99"),
            "{out}"
        );
        assert!(
            out.contains("adds 1.00 ms at p50 and 1.00 ms at p99 at the same rate; the hub's added p99 is 1.00 ms above it."),
            "{out}"
        );
        assert!(
            !out.contains("reached"),
            "an open loop's throughput is the rate it was given: {out}"
        );
        assert_eq!(out.lines().count(), 1, "{out}");
    }

    #[test]
    fn a_closed_loop_is_compared_with_each_relay_floor_by_throughput() {
        let rows = [
            row(INVOKE_DIRECT, CALLERS, "closed", 100_000, 0.5),
            row(INVOKE_VIA_HUB, CALLERS, "closed", 6_000, 8.5),
            row(INVOKE_RELAY, CALLERS, "closed", 12_000, 4.5),
            row(INVOKE_METERED_RELAY, CALLERS, "closed", 10_000, 5.5),
        ];
        let out = notes(&rows);
        assert!(out.contains("throughput 6.0% of the upstream's."), "{out}");
        assert!(
            out.contains("Relay floor: the bare framework relaying the call answers 12000 calls/s, 12.0% of the upstream's, adding 4.00 ms at p99; the hub reached 50% of its throughput."),
            "{out}"
        );
        assert!(
            out.contains("answers 10000 calls/s, 10.0% of the upstream's, adding 5.00 ms at p99; the hub reached 60% of its throughput."),
            "{out}"
        );
    }

    /// A stream row passing `chunks` events a second over `rps` streams.
    fn stream(scenario: &str, rps: u64, chunks: u64) -> Row {
        let mut row = row(scenario, CALLERS, "closed", rps, 1.0);
        row.outcome.chunks = chunks;
        row
    }

    #[test]
    fn a_stream_is_compared_with_the_framework_and_the_relay_floor() {
        let rows = [
            stream(&format!("{STREAM_DIRECT}, 16 chunks"), 10_000, 160_000),
            stream(&format!("{STREAM_VIA_HUB}, 16 chunks"), 1_000, 16_000),
            stream(&format!("{STREAM_BARE}, 16 chunks"), 4_000, 64_000),
            stream(&format!("{STREAM_RELAY}, 16 chunks"), 2_000, 32_000),
        ];
        let mut out = String::new();
        stream_notes(&mut out, &rows);
        assert!(
            out.contains("16000 chunks/s through the hub against 160000 directly, 10.0%"),
            "{out}"
        );
        assert!(
            out.contains(" Framework: the bare framework streams the same events from memory at 64000 chunks/s, 40.0% of direct; the hub reached 25% of that."),
            "{out}"
        );
        assert!(
            out.contains(" Relay floor: the bare framework relaying the upstream's stream passes 32000 chunks/s, 20.0% of direct; the hub reached 50% of that."),
            "{out}"
        );
        assert!(
            !out.contains("Metering floor"),
            "no invokeTool row in this run: {out}"
        );
    }

    #[test]
    fn a_call_without_the_hub_measured_at_that_load_has_no_note() {
        let rows = [
            row(INVOKE_DIRECT, 1, "closed", 10_000, 0.1),
            row(INVOKE_METERED_RELAY, 1, "closed", 1_000, 0.8),
        ];
        assert_eq!(notes(&rows), "");
    }
}
