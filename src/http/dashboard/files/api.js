// The one way the dashboard talks to the hub, as any client does: the public GraphQL API over HTTP
// (POST /graphql), GraphQL over Server-Sent Events for streams (POST /graphql/stream) and
// graphql-transport-ws for live events (/graphql/ws).
//
// Tokens live in memory only, never in storage: the access token goes with every request, and when the
// hub answers 401 (it expired) the refresh token gets a new pair once, silently. When that fails the
// session ends with the hub's message. Reloading the page signs out.

const USER_FIELDS = 'id name email role status emailVerified';
const REFRESH = `mutation Refresh($t: String!) { refreshToken(refreshToken: $t) {
  accessToken refreshToken user { ${USER_FIELDS} } } }`;
const LOGOUT = 'mutation Logout($t: String!) { logout(refreshToken: $t) }';
export const AUTH_FIELDS = `accessToken refreshToken user { ${USER_FIELDS} }`;

let session = null;
const listeners = new Set();

export class ApiError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

/// Calls `listener(session, reason)` whenever the session starts or ends.
export function onSession(listener) {
  listeners.add(listener);
}

export function currentUser() {
  return session?.user ?? null;
}

export function signedIn(payload) {
  session = { accessToken: payload.accessToken, refreshToken: payload.refreshToken, user: payload.user };
  for (const listener of listeners) listener(session, null);
}

/// Ends the session: asked by the person (the refresh token is revoked), or because the hub refused it
/// (`reason` is its message).
export async function signOut(reason = null) {
  const ended = session;
  session = null;
  if (ended && !reason) {
    await send('/graphql', { query: LOGOUT, variables: { t: ended.refreshToken } }, null).catch(() => {});
  }
  for (const listener of listeners) listener(null, reason);
}

async function send(path, body, token, accept = 'application/json') {
  const headers = { 'content-type': 'application/json', accept };
  if (token) headers.authorization = `Bearer ${token}`;
  return fetch(path, { method: 'POST', headers, body: JSON.stringify(body), credentials: 'omit' });
}

async function json(response) {
  const body = await response.json().catch(() => null);
  if (!body) throw new ApiError(`The hub answered ${response.status} without a body.`, 'HTTP');
  return body;
}

function firstError(body) {
  const error = body?.errors?.[0];
  return error ? new ApiError(error.message, error.extensions?.code) : null;
}

let refreshing = null;

/// A new token pair for the session, once at a time; false (and the session ended) when refused. The
/// session ends with `cause` (what the hub said first) when given, else the refusal's message.
export function refresh(cause = null) {
  if (!session) return Promise.resolve(false);
  refreshing ??= (async () => {
    const response = await send('/graphql', { query: REFRESH, variables: { t: session.refreshToken } }, null);
    const body = await response.json().catch(() => null);
    const refused = firstError(body) ?? (body?.data ? null : new ApiError('Your session ended.', 'HTTP'));
    if (refused) {
      await signOut(`${cause ?? refused.message} Sign in again.`);
      return false;
    }
    session = { ...session, ...body.data.refreshToken };
    return true;
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/// Runs a query or a mutation; its `data`, or throws the hub's first error.
export async function gql(query, variables = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const token = session?.accessToken ?? null;
    const response = await send('/graphql', { query, variables }, token);
    if (response.status === 401) {
      if (attempt === 0 && token && (await refresh())) continue;
      const refused = firstError(await response.json().catch(() => null));
      throw new ApiError(refused?.message ?? 'Sign in to continue.', 'UNAUTHENTICATED');
    }
    const body = await json(response);
    const error = firstError(body);
    if (error) throw error;
    return body.data;
  }
}

/// Follows a subscription over GraphQL over SSE, calling `onData(data)` for each event, until the hub
/// completes it or `signal` aborts it.
export async function stream(query, variables, onData, signal) {
  for (let attempt = 0; ; attempt += 1) {
    const token = session?.accessToken ?? null;
    const response = await fetch('/graphql/stream', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
      credentials: 'omit',
      signal,
    });
    if (response.status === 401 && attempt === 0 && (await refresh())) continue;
    if (!response.ok) throw firstError(await response.json().catch(() => null)) ?? new ApiError(`The hub answered ${response.status}.`, 'HTTP');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replaceAll('\r\n', '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data += line.slice(5).trimStart();
        }
        if (event === 'complete') return;
        if (event !== 'next' || !data) continue;
        const result = JSON.parse(data);
        const error = firstError(result);
        if (error) throw error;
        onData(result.data);
      }
    }
  }
}

/// Follows a subscription over the WebSocket: `onData(data)` for each event, `onResume()` each time it
/// is following again after a reconnection (events in between were missed), `onEnd(message)` when the
/// hub ends it for good. The hub closes the socket when the access token expires (the page refreshes
/// its tokens and reconnects at once) or the credentials no longer hold (the session ends). Returns a
/// function that stops it.
export function live(query, onData, onEnd, onResume = () => {}) {
  let socket = null;
  let stopped = false;
  let lastOpened = 0;
  let opened = 0;
  const open = () => {
    lastOpened = Date.now();
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    socket = new WebSocket(`${scheme}://${location.host}/graphql/ws`, 'graphql-transport-ws');
    socket.onopen = () => socket.send(JSON.stringify({
      type: 'connection_init', payload: { Authorization: `Bearer ${session?.accessToken}` },
    }));
    socket.onmessage = (message) => {
      const frame = JSON.parse(message.data);
      if (frame.type === 'connection_ack') {
        socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query } }));
        opened += 1;
        if (opened > 1) onResume();
      } else if (frame.type === 'next') {
        const error = firstError(frame.payload);
        if (error) onEnd(error.message);
        else onData(frame.payload.data);
      } else if (frame.type === 'error') {
        onEnd(frame.payload?.[0]?.message ?? 'The live feed stopped.');
      } else if (frame.type === 'ping') {
        socket.send(JSON.stringify({ type: 'pong' }));
      }
    };
    socket.onclose = async (event) => {
      if (stopped) return;
      const expired = event.code === 4401;
      const quickly = !expired && Date.now() - lastOpened < 5000;
      if (session && (await refresh(expired ? null : event.reason || null)) && !stopped) {
        setTimeout(open, quickly ? 5000 : 50);
      } else if (!stopped) {
        onEnd(event.reason || 'The live feed stopped.');
      }
    };
  };
  open();
  return () => {
    stopped = true;
    socket?.close(1000, 'left the page');
  };
}
