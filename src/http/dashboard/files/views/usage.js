// Usage: totals of the last 30 days, a chart of tokens per day, tokens per tool, and the latest calls,
// to which calls made anywhere (another tab, a script with a key) are added live.

import { gql, live } from '../api.js';
import { format, h, svg } from '../dom.js';

const SUMMARY = `query Summary($from: DateTime) {
  usageSummary(from: $from) { totalInvocations totalTokens tokenLimit tokensRemaining
    byDay { day tokens invocations } byTool { tool { name } tokens invocations } }
  usage(first: 20) { nodes { id createdAt status tokensUsed latencyMs tool { name } } } }`;
const LATEST = 'query { usage(first: 20) { nodes { id createdAt status tokensUsed latencyMs tool { name } } } }';
const EVENTS = 'subscription { usageEvents { id createdAt status tokensUsed latencyMs tool { name } } }';

export async function view(main) {
  const from = new Date(Date.now() - 30 * 86_400_000).toISOString();
  const { usageSummary: summary, usage } = await gql(SUMMARY, { from });
  const invocations = h('strong', {}, format.number(summary.totalInvocations));
  const tokens = h('strong', {}, format.number(summary.totalTokens));
  const rows = h('tbody', {}, ...usage.nodes.map(row));
  const feed = h('p', { class: 'muted', role: 'status' }, 'Live: new calls appear here as they are made.');
  main.append(
    h('div', { class: 'totals' },
      h('p', {}, 'Calls in 30 days: ', invocations),
      h('p', {}, 'Tokens in 30 days: ', tokens),
      summary.tokenLimit === null ? null : h('p', {}, 'Left this period: ', h('strong', {}, format.number(summary.tokensRemaining)))),
    h('h2', {}, 'Tokens per day'),
    chart(summary.byDay),
    h('h2', {}, 'Tokens per tool'),
    toolChart(summary.byTool),
    h('div', { class: 'table' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Tool'), h('th', { scope: 'col' }, 'Calls'), h('th', { scope: 'col' }, 'Tokens'))),
      h('tbody', {}, ...summary.byTool.map((t) => h('tr', {}, h('td', {}, t.tool.name), h('td', {}, format.number(t.invocations)), h('td', {}, format.number(t.tokens))))))),
    h('h2', {}, 'Latest calls'),
    feed,
    h('div', { class: 'table' }, h('table', { id: 'latest' },
      h('thead', {}, h('tr', {}, ...['When', 'Tool', 'Status', 'Tokens', 'Latency'].map((c) => h('th', { scope: 'col' }, c)))),
      rows)),
  );
  return live(EVENTS, ({ usageEvents: event }) => {
    rows.prepend(row(event));
    invocations.textContent = format.number(Number(invocations.textContent.replaceAll(',', '')) + 1);
    tokens.textContent = format.number(Number(tokens.textContent.replaceAll(',', '')) + Number(event.tokensUsed));
  }, (message) => {
    feed.textContent = message;
    feed.className = 'error';
  }, async () => {
    const { usage: latest } = await gql(LATEST);
    rows.replaceChildren(...latest.nodes.map(row));
  });
}

function row(entry) {
  return h('tr', { 'data-id': entry.id },
    h('td', {}, format.time(entry.createdAt)),
    h('td', {}, entry.tool.name),
    h('td', {}, entry.status),
    h('td', {}, format.number(entry.tokensUsed)),
    h('td', {}, `${entry.latencyMs} ms`));
}

/// Bars of tokens for each of the last 30 days (days without calls at zero), each with its figures in
/// a title, and a summary for screen readers.
function chart(days) {
  const byDay = new Map(days.map((d) => [d.day, d]));
  const all = [];
  for (let i = 29; i >= 0; i -= 1) {
    const day = new Date(Date.now() - i * 86_400_000).toISOString().slice(0, 10);
    all.push(byDay.get(day) ?? { day, tokens: 0, invocations: 0 });
  }
  const width = 600;
  const height = 200;
  const max = Math.max(1, ...all.map((d) => Number(d.tokens)));
  const step = width / all.length;
  const total = all.reduce((sum, d) => sum + Number(d.tokens), 0);
  return svg('svg', {
    class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `Tokens per day over the last 30 days: ${format.number(total)} in all`,
  }, ...all.map((d, i) => {
    const bar = (Number(d.tokens) / max) * (height - 10);
    return svg('rect', { x: i * step + 2, y: height - bar, width: step - 4, height: bar, 'data-day': d.day, 'data-tokens': d.tokens },
      svg('title', {}, `${d.day}: ${format.number(d.tokens)} tokens, ${format.number(d.invocations)} calls`));
  }));
}

/// Horizontal bars of tokens per tool.
function toolChart(tools) {
  const max = Math.max(1, ...tools.map((t) => Number(t.tokens)));
  const rowHeight = 28;
  return svg('svg', {
    class: 'chart', viewBox: `0 0 600 ${Math.max(tools.length, 1) * rowHeight}`, role: 'img',
    'aria-label': `Tokens per tool: ${tools.map((t) => `${t.tool.name} ${format.number(t.tokens)}`).join(', ') || 'none yet'}`,
  }, ...tools.flatMap((t, i) => [
    svg('text', { x: 4, y: i * rowHeight + 18, 'font-size': 14 }, t.tool.name),
    svg('rect', { x: 200, y: i * rowHeight + 6, width: (Number(t.tokens) / max) * 390, height: rowHeight - 12, 'data-tool': t.tool.name },
      svg('title', {}, `${t.tool.name}: ${format.number(t.tokens)} tokens`)),
  ]));
}
