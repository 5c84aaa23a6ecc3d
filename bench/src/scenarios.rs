//! The scenarios and their seed data; the table is `report`'s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::load::{self, Expect, Load, Mode, Prepared};
use crate::report::{
    self, BARE_DASHBOARD, BARE_HELLO, CALLERS, CEILING, DASHBOARD_READ, INVOKE_DIRECT,
    INVOKE_METERED_RELAY, INVOKE_RELAY, INVOKE_VIA_HUB, Row, STREAM_BARE, STREAM_DIRECT,
    STREAM_RELAY, STREAM_VIA_HUB, TYPENAME,
};
use crate::server::{self, ADMIN_EMAIL, ADMIN_PASSWORD, CpuSnapshot, RssSampler, Server};

pub struct Options {
    pub scenarios: Vec<String>,
    pub duration: Duration,
    pub warmup: Duration,
    pub usage_rows: i64,
    pub dir: PathBuf,
    pub build: bool,
    /// The server's `RUST_LOG`.
    pub hub_log: String,
    /// The README whose results section the table replaces, if asked.
    pub readme: Option<PathBuf>,
    /// Scenario b's open-loop rates over [`CALLERS`] connections.
    pub invoke_rates: Vec<f64>,
    /// Scenario a's open-loop rate; `None`: half its 64-connection closed-loop throughput.
    pub read_rate: Option<f64>,
}

const BARE_STREAM: &str = "subscription Stream($count: Int!) { chunks(count: $count) { text invocation { id status tokensUsed } } }";
const BARE_INVOKE: &str =
    "mutation Invoke($input: JSON!) { invoke(input: $input) { id status tokensUsed output } }";
const BARE_INVOKE_METERED: &str = "mutation Invoke($input: JSON!) { invokeMetered(input: $input) { id status tokensUsed output } }";
const RELAY_STREAM: &str = "subscription Stream($count: Int!) { relay(count: $count) { text invocation { id status tokensUsed } } }";

impl Options {
    fn wants(&self, scenario: &str) -> bool {
        self.scenarios.iter().any(|s| s == scenario)
    }
}

const PASSWORD: &str = "Bench-User-Passw0rd!";
/// Users seeded for the load (the login scenario uses one per connection, up to 200).
const USERS: usize = 200;
/// The generated usage rows' busiest user, and the password the generator gives every user.
const BUSIEST_USER: &str = "gen-1@example.com";
const GENERATED_PASSWORD: &str = "Generated-Passw0rd!";

const DASHBOARD: &str = "query Dashboard { me { id email name role } tools(first: 20) { totalCount nodes { id name slug description category minTier } } }";
const INVOKE: &str = "mutation Invoke($tool: ID!, $input: JSON!) { invokeTool(toolId: $tool, input: $input) { id status tokensUsed output } }";
const SUMMARY: &str = "query Summary($from: DateTime!, $to: DateTime!) { usageSummary(from: $from, to: $to) { totalTokens totalInvocations byTool { tool { name } invocations tokens } byDay { day invocations tokens } } }";
const USAGE: &str = "query Usage($after: String) { usage(first: 20, after: $after) { pageInfo { hasNextPage endCursor } edges { cursor node { id tokensUsed status latencyMs createdAt tool { name } } } } }";
const STATS: &str = "query Stats($from: DateTime, $to: DateTime) { admin { stats(from: $from, to: $to) { users { total new active } invocations tokens errorRate byTool { invocations errorRate p95LatencyMs } byDay { day invocations } byTier { tier tokens } subscriptions { tier active } monthlyRecurringRevenue { amountCents } } } }";
const INVOKE_STREAM: &str = "subscription Stream($tool: ID!, $input: JSON!) { invokeToolStream(toolId: $tool, input: $input) { text invocation { id status tokensUsed } } }";
const LOGIN: &str = "mutation Login($input: LoginInput!) { login(input: $input) { accessToken } }";

struct Bench<'a> {
    options: &'a Options,
    server: &'a Server,
    rows: Vec<Row>,
    /// The bare server running now, by address and process: the rows it answers report its own
    /// CPU time and memory.
    bare: Option<(SocketAddr, Option<u32>)>,
}

impl Bench<'_> {
    async fn measure(
        &mut self,
        scenario: &str,
        address: SocketAddr,
        requests: Vec<Prepared>,
        connections: usize,
        mode: Mode,
        expect: Expect,
    ) -> anyhow::Result<()> {
        eprintln!("  {scenario}: {connections} connections, {mode:?}…");
        // Login clients back off as told; the others never get refusals to honour.
        let honor_retry_after = matches!(expect, Expect::GraphqlOrShed);
        // The answering process: the hub, or the bare server while it is measured.
        let answering = match self.bare {
            Some((bare, pid)) if bare == address => pid,
            _ => self.server.pid(),
        };
        let sampler = RssSampler::start(answering);
        // CPU used while the load is measured: from the end of the warm-up to the end of the run.
        let hub = self.server.pid();
        let (warmup, duration) = (self.options.warmup, self.options.duration);
        let cpu = tokio::spawn(async move {
            tokio::time::sleep(warmup).await;
            let from = CpuSnapshot::take(answering, hub);
            tokio::time::sleep(duration).await;
            let to = CpuSnapshot::take(answering, hub);
            (to.seconds_since(&from), to.stolen_since(&from))
        });
        let outcome = load::run(Load {
            address,
            requests,
            connections,
            mode,
            warmup: self.options.warmup,
            duration: self.options.duration,
            expect,
            honor_retry_after,
        })
        .await?;
        let rss_mib = sampler.finish();
        let (cpu_seconds, stolen) = cpu.await?;
        if let Some(error) = &outcome.first_error {
            eprintln!("    first error: {error}");
        }
        self.rows.push(Row {
            scenario: scenario.to_owned(),
            connections,
            mode: match mode {
                Mode::Closed => "closed".into(),
                Mode::Open { rate } => format!("open {rate:.0}/s"),
            },
            outcome,
            rss_mib,
            cpu_seconds,
            stolen,
        });
        Ok(())
    }

    fn last_rps(&self) -> f64 {
        self.rows.last().map_or(0.0, |row| row.outcome.rps())
    }
}

fn data<'a>(body: &'a Value, field: &str) -> anyhow::Result<&'a Value> {
    body.get("data")
        .and_then(|d| d.get(field))
        .filter(|v| !v.is_null())
        .with_context(|| format!("{field} failed: {body}"))
}

fn code(body: &Value) -> Option<&str> {
    body.get("errors")?
        .get(0)?
        .get("extensions")?
        .get("code")?
        .as_str()
}

/// Logs in (retrying when the server sheds the request); the access token.
async fn login(server: &Server, email: &str, password: &str) -> anyhow::Result<String> {
    for _ in 0..50 {
        let body = server
            .graphql(
                None,
                LOGIN,
                json!({ "input": { "email": email, "password": password } }),
            )
            .await?;
        if code(&body) == Some("RATE_LIMITED") {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        return Ok(data(&body, "login")?
            .get("accessToken")
            .and_then(Value::as_str)
            .context("no access token")?
            .to_owned());
    }
    bail!("{email} could not log in")
}

/// The seeded user's access token: registered on the first run, logged in later.
async fn user_token(server: &Server, email: &str) -> anyhow::Result<String> {
    let body = server
        .graphql(
            None,
            "mutation R($input: RegisterInput!) { register(input: $input) { accessToken } }",
            json!({ "input": { "email": email, "name": "Bench user", "password": PASSWORD } }),
        )
        .await?;
    match data(&body, "register") {
        Ok(payload) => Ok(payload
            .get("accessToken")
            .and_then(Value::as_str)
            .context("no access token")?
            .to_owned()),
        Err(_) if code(&body) == Some("CONFLICT") => login(server, email, PASSWORD).await,
        Err(e) => Err(e),
    }
}

/// Tools on the dashboard read's page (`tools(first: 20)`).
const CATALOGUE_PAGE: usize = 20;

struct Seed {
    tokens: Vec<String>,
    api_keys: Vec<String>,
    tool: String,
}

async fn seed(server: &Server, upstream: SocketAddr) -> anyhow::Result<Seed> {
    eprintln!("seeding users, API keys and the tool…");
    let admin = login(server, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let input = json!({
        "name": "Bench echo", "slug": "bench-echo", "description": "Echoes its prompt (benchmark upstream)",
        "category": "benchmark", "endpoint": format!("http://{upstream}/v1/chat/completions"),
        "method": "POST", "timeoutMs": 10000, "estimatedTokens": 50, "minTier": "FREE", "enabled": true
    });
    let tool = upsert_tool(server, &admin, "Bench echo", "bench-echo", input).await?;
    // The dashboard read's page is 20 tools in every bench directory, whatever else made tools there.
    for n in 1..CATALOGUE_PAGE {
        let (name, slug) = (
            format!("Bench catalogue {n:02}"),
            format!("bench-catalogue-{n:02}"),
        );
        let input = json!({
            "name": name, "slug": slug, "description": "A tool of the catalogue's first page (never invoked)",
            "category": "benchmark", "endpoint": format!("http://{upstream}/v1/chat/completions"),
            "method": "POST", "timeoutMs": 10000, "estimatedTokens": 50, "minTier": "FREE", "enabled": true
        });
        upsert_tool(server, &admin, &name, &slug, input).await?;
    }

    let mut tokens = Vec::with_capacity(USERS);
    for i in 0..USERS {
        tokens.push(user_token(server, &format!("bench-{i}@example.com")).await?);
    }
    let mut api_keys = Vec::new();
    for token in tokens.iter().take(64) {
        let body = server
            .graphql(
                Some(token),
                "mutation { subscribe(tier: ENTERPRISE) { currentPeriodEnd } }",
                json!({}),
            )
            .await?;
        // A later run finds its users subscribed already.
        if code(&body) != Some("CONFLICT") {
            data(&body, "subscribe")?;
        }
        let body = server
            .graphql(
                Some(token),
                "mutation { createApiKey(input: { name: \"bench\" }) { key } }",
                json!({}),
            )
            .await?;
        api_keys.push(
            data(&body, "createApiKey")?
                .get("key")
                .and_then(Value::as_str)
                .context("no key")?
                .to_owned(),
        );
    }
    Ok(Seed {
        tokens,
        api_keys,
        tool,
    })
}

/// Creates the tool named `name` (slug `slug`) from `input`, or updates it when an earlier run made it;
/// returns its id.
async fn upsert_tool(
    server: &Server,
    admin: &str,
    name: &str,
    slug: &str,
    input: Value,
) -> anyhow::Result<String> {
    let found = server
        .graphql(
            Some(admin),
            "query F($s: String) { tools(first: 5, search: $s) { nodes { id slug } } }",
            json!({ "s": name }),
        )
        .await?;
    let existing = data(&found, "tools")?
        .get("nodes")
        .and_then(Value::as_array)
        .and_then(|nodes| {
            nodes
                .iter()
                .find(|n| n.get("slug").and_then(Value::as_str) == Some(slug))
        })
        .and_then(|n| n.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    match existing {
        Some(id) => {
            let body = server
                .graphql(
                    Some(admin),
                    "mutation U($id: ID!, $input: ToolInput!) { updateTool(id: $id, input: $input) { id } }",
                    json!({ "id": id, "input": input }),
                )
                .await?;
            data(&body, "updateTool")?;
            Ok(id)
        }
        None => {
            let body = server
                .graphql(
                    Some(admin),
                    "mutation C($input: ToolInput!) { createTool(input: $input) { id } }",
                    json!({ "input": input }),
                )
                .await?;
            Ok(data(&body, "createTool")?
                .get("id")
                .and_then(Value::as_str)
                .context("no tool id")?
                .to_owned())
        }
    }
}

/// A request rate no load here reaches (its burst alone is a million calls): every call is paced,
/// none refused.
const PACED_RATE: i64 = 6_000_000;

/// A token limit no load here reaches: every call reserves (from slices), none is refused.
const LIMITED_TOKENS: i64 = 1_000_000_000_000;

/// Sets the Enterprise plan's token limit (`None`: unlimited).
async fn set_enterprise_token_limit(
    server: &Server,
    admin: &str,
    token_limit: Option<i64>,
) -> anyhow::Result<()> {
    let body = server
        .graphql(
            Some(admin),
            "mutation L($t: BigInt) { updatePlan(tier: ENTERPRISE, input: { tokenLimit: $t }) { tokenLimit } }",
            json!({ "t": token_limit.map(|t| t.to_string()) }),
        )
        .await?;
    data(&body, "updatePlan")?;
    Ok(())
}

/// Sets the Enterprise plan's requests per minute (`None`: no rate).
async fn set_enterprise_rate(
    server: &Server,
    admin: &str,
    requests_per_minute: Option<i64>,
) -> anyhow::Result<()> {
    let body = server
        .graphql(
            Some(admin),
            "mutation R($r: Int) { updatePlan(tier: ENTERPRISE, input: { requestsPerMinute: $r }) { requestsPerMinute } }",
            json!({ "r": requests_per_minute }),
        )
        .await?;
    data(&body, "updatePlan")?;
    Ok(())
}

fn graphql(body: &Value, token: &str) -> Prepared {
    Prepared::post_json("/graphql", body).header("authorization", format!("Bearer {token}"))
}

pub async fn run_all(options: Options) -> anyhow::Result<()> {
    if options.build {
        server::build_server().await?;
    }
    let environment = server::Environment::new(&options.dir, &options.hub_log)?;
    if options.wants("c") {
        environment.ensure_usage_rows(options.usage_rows).await?;
    }
    let upstream = server::start_upstream().await?;
    eprintln!(
        "starting the server (its PostgreSQL under {})…",
        options.dir.display()
    );
    let server = environment.start_server().await?;
    let cluster = environment.cluster_url();
    let result = run_scenarios(&options, &server, upstream.address, cluster.as_deref()).await;
    server.stop().await?;
    let rows = result?;
    let table = report::render(&rows, options.duration, options.warmup, &options.hub_log);
    println!("{table}");
    std::fs::write(options.dir.join("results.md"), &table)?;
    if let Some(readme) = &options.readme {
        crate::readme::update(readme, &table, &options.scenarios)?;
        eprintln!("the table is in {}", readme.display());
    }
    Ok(())
}

async fn run_scenarios(
    options: &Options,
    server: &Server,
    upstream: SocketAddr,
    cluster: Option<&str>,
) -> anyhow::Result<Vec<Row>> {
    let seed = seed(server, upstream).await?;
    let mut bench = Bench {
        options,
        server,
        rows: Vec::new(),
        bare: None,
    };
    let hub = server.address;

    if options.wants("e") {
        eprintln!("e. ceiling: a trivial HTTP responder");
        bench
            .measure(
                CEILING,
                upstream,
                vec![Prepared::get("/ping")],
                64,
                Mode::Closed,
                Expect::Success,
            )
            .await?;
    }
    if options.wants("a") {
        eprintln!("a. reads against the bare framework: {{ hello }} alone, then the hub's");
        let hello = server::start_hello(upstream, None).await?;
        bench.bare = Some((hello.address, hello.pid()));
        bench
            .measure(
                BARE_HELLO,
                hello.address,
                vec![Prepared::post_json(
                    "/graphql",
                    &json!({ "query": "{ hello }" }),
                )],
                64,
                Mode::Closed,
                Expect::GraphqlData,
            )
            .await?;
        bench
            .measure(
                BARE_DASHBOARD,
                hello.address,
                vec![Prepared::post_json(
                    "/graphql",
                    &json!({ "query": DASHBOARD }),
                )],
                64,
                Mode::Closed,
                Expect::GraphqlData,
            )
            .await?;
        drop(hello);
        let typename: Vec<Prepared> = seed
            .api_keys
            .iter()
            .take(64)
            .map(|key| graphql(&json!({ "query": "{ __typename }" }), key))
            .collect();
        bench
            .measure(
                TYPENAME,
                hub,
                typename,
                64,
                Mode::Closed,
                Expect::GraphqlData,
            )
            .await?;
        eprintln!("a. dashboard read: me + first 20 tools, with a JWT");
        let body = json!({ "query": DASHBOARD });
        let requests: Vec<Prepared> = seed
            .tokens
            .iter()
            .take(64)
            .map(|t| graphql(&body, t))
            .collect();
        bench
            .measure(
                DASHBOARD_READ,
                hub,
                requests.clone(),
                64,
                Mode::Closed,
                Expect::GraphqlData,
            )
            .await?;
        let capacity = bench.last_rps();
        bench
            .measure(
                DASHBOARD_READ,
                hub,
                requests.clone(),
                1000,
                Mode::Closed,
                Expect::GraphqlData,
            )
            .await?;
        // The same offered load from 64 and from 1000 connections: half of what 64 closed-loop
        // connections reached, unless a rate is given.
        let rate = options.read_rate.unwrap_or((capacity / 2.0).max(1.0));
        for connections in [64, 1000] {
            bench
                .measure(
                    DASHBOARD_READ,
                    hub,
                    requests.clone(),
                    connections,
                    Mode::Open { rate },
                    Expect::GraphqlData,
                )
                .await?;
        }
    }
    if options.wants("b") {
        eprintln!("b. invokeTool with an API key vs the upstream directly");
        let input = json!({ "prompt": "summarise the benchmark in five words" });
        let direct = Prepared::post_json("/v1/chat/completions", &input);
        let body = json!({ "query": INVOKE, "variables": { "tool": seed.tool, "input": input } });
        let invokes: Vec<Prepared> = seed
            .api_keys
            .iter()
            .map(|key| Prepared::post_json("/graphql", &body).header("x-api-key", key.clone()))
            .collect();
        // The Enterprise plan's 1 200 calls a minute would refuse most of this load: first without
        // a rate, then with one so high it never refuses, to measure what pacing costs.
        let admin = login(server, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
        set_enterprise_rate(server, &admin, None).await?;
        let open = options
            .invoke_rates
            .iter()
            .map(|&rate| (CALLERS, Mode::Open { rate }));
        for (connections, mode) in [(1, Mode::Closed), (CALLERS, Mode::Closed)]
            .into_iter()
            .chain(open)
        {
            bench
                .measure(
                    INVOKE_DIRECT,
                    upstream,
                    vec![direct.clone()],
                    connections,
                    mode,
                    Expect::Success,
                )
                .await?;
            bench
                .measure(
                    INVOKE_VIA_HUB,
                    hub,
                    invokes.clone(),
                    connections,
                    mode,
                    Expect::GraphqlData,
                )
                .await?;
        }
        // Paced, with a token limit, then with neither once more: the two unlimited runs bracket the
        // others, so what the database accumulates over the runs does not pass for the cost of
        // pacing or of the limit.
        for (label, rate, token_limit) in [
            ("b. invokeTool via the hub, paced", Some(PACED_RATE), None),
            (
                "b. invokeTool via the hub, token limit",
                None,
                Some(LIMITED_TOKENS),
            ),
            ("b. invokeTool via the hub, no rate again", None, None),
        ] {
            set_enterprise_rate(server, &admin, rate).await?;
            set_enterprise_token_limit(server, &admin, token_limit).await?;
            bench
                .measure(
                    label,
                    hub,
                    invokes.clone(),
                    CALLERS,
                    Mode::Closed,
                    Expect::GraphqlData,
                )
                .await?;
        }
        set_enterprise_rate(server, &admin, Some(1200)).await?;
        let hello = server::start_hello(upstream, cluster).await?;
        bench.bare = Some((hello.address, hello.pid()));
        for (label, query) in [
            (INVOKE_RELAY, BARE_INVOKE),
            (INVOKE_METERED_RELAY, BARE_INVOKE_METERED),
        ] {
            if query == BARE_INVOKE_METERED && cluster.is_none() {
                eprintln!("the server's PostgreSQL is not found: no metered relay floor");
                continue;
            }
            let bare = json!({ "query": query, "variables": { "input": input } });
            // The metered relay also runs on the open loop's schedule: what the rule that usage is
            // durable before the answer adds at those rates, on this machine, without the hub.
            let open_too = if query == BARE_INVOKE_METERED {
                options.invoke_rates.as_slice()
            } else {
                &[]
            };
            let open = open_too.iter().map(|&rate| (CALLERS, Mode::Open { rate }));
            for (connections, mode) in [(1, Mode::Closed), (CALLERS, Mode::Closed)]
                .into_iter()
                .chain(open)
            {
                bench
                    .measure(
                        label,
                        hello.address,
                        vec![Prepared::post_json("/graphql", &bare)],
                        connections,
                        mode,
                        Expect::GraphqlData,
                    )
                    .await?;
            }
        }
        drop(hello);
    }
    if options.wants("f") {
        eprintln!("f. invokeToolStream with an API key vs the upstream streaming directly");
        let admin = login(server, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
        set_enterprise_rate(server, &admin, None).await?;
        let input = json!({
            "name": "Bench stream", "slug": "bench-stream", "description": "Streams its answer (benchmark upstream)",
            "category": "benchmark", "endpoint": format!("http://{upstream}/v1/chat/completions"),
            "method": "POST", "timeoutMs": 10000, "estimatedTokens": 50, "minTier": "FREE",
            "enabled": true, "streams": true
        });
        let tool = upsert_tool(server, &admin, "Bench stream", "bench-stream", input).await?;
        let hello = server::start_hello(upstream, None).await?;
        bench.bare = Some((hello.address, hello.pid()));
        let prompt = "stream these words back";
        // Short answers (16 chunks) show what each stream costs; long ones (256) what each chunk costs.
        for (chunks, callers) in [(16, 1), (16, CALLERS), (256, CALLERS)] {
            let direct = Prepared::post_json(
                "/v1/chat/completions",
                &json!({ "prompt": prompt, "max_tokens": chunks, "stream": true, "stream_options": { "include_usage": true } }),
            );
            let body = json!({ "query": INVOKE_STREAM, "variables": { "tool": tool, "input": { "prompt": prompt, "max_tokens": chunks } } });
            let streams: Vec<Prepared> = seed
                .api_keys
                .iter()
                .map(|key| {
                    Prepared::post_json("/graphql/stream", &body)
                        .header("authorization", format!("Bearer {key}"))
                })
                .collect();
            bench
                .measure(
                    &format!("{STREAM_DIRECT}, {chunks} chunks"),
                    upstream,
                    vec![direct],
                    callers,
                    Mode::Closed,
                    Expect::EventStream,
                )
                .await?;
            bench
                .measure(
                    &format!("{STREAM_VIA_HUB}, {chunks} chunks"),
                    hub,
                    streams,
                    callers,
                    Mode::Closed,
                    Expect::EventStream,
                )
                .await?;
            // The bare framework: the same events from memory, then relayed from the upstream.
            for (label, query) in [(STREAM_BARE, BARE_STREAM), (STREAM_RELAY, RELAY_STREAM)] {
                let body = json!({ "query": query, "variables": { "count": chunks } });
                bench
                    .measure(
                        &format!("{label}, {chunks} chunks"),
                        hello.address,
                        vec![Prepared::post_json("/graphql/stream", &body)],
                        callers,
                        Mode::Closed,
                        Expect::EventStream,
                    )
                    .await?;
            }
        }
        drop(hello);
    }
    if options.wants("c") {
        eprintln!(
            "c. usage at scale ({} rows), as the busiest user",
            options.usage_rows
        );
        let token = login(server, BUSIEST_USER, GENERATED_PASSWORD).await?;
        let admin = login(server, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
        let (from, to) = (one_year_ago()?, "2100-01-01T00:00:00Z");
        // The cursor of the 100th page, walked to page by page as a client would.
        let mut after = Value::Null;
        for _ in 0..99 {
            let page = server
                .graphql(Some(&token), USAGE, json!({ "after": after }))
                .await?;
            after = data(&page, "usage")?
                .get("pageInfo")
                .and_then(|p| p.get("endCursor"))
                .cloned()
                .context("no cursor")?;
        }
        let cases = [
            (
                "c. usageSummary, one year",
                SUMMARY,
                json!({ "from": from, "to": to }),
                &token,
            ),
            (
                "c. usage page 1",
                USAGE,
                json!({ "after": Value::Null }),
                &token,
            ),
            (
                "c. usage page 100",
                USAGE,
                json!({ "after": after }),
                &token,
            ),
            (
                "c. admin.stats, one year",
                STATS,
                json!({ "from": from, "to": to }),
                &admin,
            ),
        ];
        // One client at a time (the latency a dashboard sees), then four at once.
        for (name, query, variables, token) in cases {
            let body = json!({ "query": query, "variables": variables });
            for connections in [1, 4] {
                bench
                    .measure(
                        name,
                        hub,
                        vec![graphql(&body, token)],
                        connections,
                        Mode::Closed,
                        Expect::GraphqlData,
                    )
                    .await?;
            }
        }
    }
    if options.wants("d") {
        eprintln!("d. login storms");
        let logins: Vec<Prepared> = (0..USERS)
            .map(|i| {
                let body = json!({ "query": LOGIN, "variables": { "input": {
                    "email": format!("bench-{i}@example.com"), "password": PASSWORD } } });
                // Each user signs in from an address of its own, as behind a load balancer (the
                // server trusts the loopback proxy's X-Forwarded-For); from one address, the login
                // throttle would rightly refuse a burst of 200.
                let mut login = Prepared::post_json("/graphql", &body);
                login
                    .headers
                    .push(("x-forwarded-for", format!("10.0.{}.{}", i / 256, i % 256)));
                login
            })
            .collect();
        for connections in [20, 200] {
            bench
                .measure(
                    "d. login",
                    hub,
                    logins.clone(),
                    connections,
                    Mode::Closed,
                    Expect::GraphqlOrShed,
                )
                .await?;
            // Let the hashing queue drain between storms.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    Ok(bench.rows)
}

fn one_year_ago() -> anyhow::Result<String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let seconds = now.as_secs().saturating_sub(365 * 86_400);
    // Days since the epoch to a civil date (Howard Hinnant's algorithm), so no date crate is needed.
    let days = i64::try_from(seconds / 86_400)?;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Ok(format!("{year:04}-{month:02}-{day:02}T00:00:00Z"))
}
