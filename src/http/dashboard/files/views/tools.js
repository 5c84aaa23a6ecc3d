// The tool catalogue with search, and invoking a tool: a streaming tool's answer appears as it is
// written (GraphQL over SSE), another's when it is done.

import { gql, stream } from '../api.js';
import { errorBox, field, form, format, h } from '../dom.js';

const TOOLS = `query Tools($search: String) { tools(first: 50, search: $search) {
  totalCount nodes { id name description category minTier streams estimatedTokens } } }`;
const INVOKE = `mutation Invoke($tool: ID!, $input: JSON!) { invokeTool(toolId: $tool, input: $input) {
  id status tokensUsed tokensEstimated latencyMs output } }`;
const INVOKE_STREAM = `subscription Stream($tool: ID!, $input: JSON!) { invokeToolStream(toolId: $tool, input: $input) {
  text invocation { id status tokensUsed tokensEstimated latencyMs } } }`;

export async function view(main) {
  const list = h('ul', { class: 'cards', 'aria-label': 'Tools' });
  const panel = h('section', { 'aria-label': 'Invoke a tool' });
  const count = h('p', { class: 'muted', role: 'status' });
  let typing = null;
  const search = field('Search the tools', { type: 'search', name: 'search', placeholder: 'name or description' });
  search.querySelector('input').addEventListener('input', (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => load(event.target.value.trim()), 250);
  });
  main.append(search, count, list, panel);

  async function load(text) {
    try {
      const { tools } = await gql(TOOLS, { search: text || null });
      count.textContent = `${tools.totalCount} tool${tools.totalCount === 1 ? '' : 's'}`;
      list.replaceChildren(...tools.nodes.map((tool) => h('li', { class: 'card' },
        h('h3', {}, tool.name),
        h('p', {}, tool.description),
        h('p', { class: 'muted' }, `${tool.category} · ${tool.minTier} plan or higher${tool.streams ? ' · streams' : ''}`),
        h('button', { type: 'button', onclick: () => open(tool) }, `Use ${tool.name}`))));
    } catch (error) {
      list.replaceChildren(errorBox(error));
    }
  }

  function open(tool) {
    const output = h('pre', { class: 'output', 'aria-live': 'polite', 'aria-label': 'Answer' });
    const outcome = h('p', { role: 'status' });
    panel.replaceChildren(
      h('h2', {}, tool.name),
      form(async (data) => {
        output.textContent = '';
        outcome.textContent = '';
        const input = { messages: [{ role: 'user', content: data.get('prompt') }] };
        let done = null;
        if (tool.streams) {
          await stream(INVOKE_STREAM, { tool: tool.id, input }, ({ invokeToolStream: event }) => {
            output.textContent += event.text;
            if (event.invocation) done = event.invocation;
          });
        } else {
          const { invokeTool } = await gql(INVOKE, { tool: tool.id, input });
          output.textContent = answerText(invokeTool.output);
          done = invokeTool;
        }
        if (done) {
          outcome.textContent = `${done.status} · ${format.number(done.tokensUsed)} tokens${done.tokensEstimated ? ' (estimated)' : ''} · ${done.latencyMs} ms`;
        }
      },
      field('Prompt', { as: 'textarea', name: 'prompt', required: true }),
      h('button', { type: 'submit' }, 'Invoke')),
      output,
      outcome,
    );
    panel.querySelector('textarea').focus();
  }

  await load('');
}

/// The text of a chat-style answer, else the answer as JSON.
function answerText(output) {
  const text = output?.choices?.[0]?.message?.content ?? output?.text;
  return typeof text === 'string' ? text : JSON.stringify(output, null, 2);
}
