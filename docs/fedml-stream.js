// Minimal FedML stream client (browser or Node >= 22, which has a global WebSocket).
// Follows a log or event stream, acknowledges what it receives, and resumes after a disconnect
// from the last sequence number of each follow: no gap, no duplicate.
//
//   const stop = followFedML("wss://fedml.example.org/ws/runs/<run-id>/logs/", {
//     getToken: async () => supabaseAccessToken(), // the signed-in dashboard user's Supabase session
//     onLines: (follow, lines) => lines.forEach((l) => console.log(follow, l.seq, l.text)),
//     onEvents: (follow, events) => events.forEach((e) => console.log(e.type, e.payload)),
//     onEnd: (follow, status) => console.log(follow, "ended", status),
//   });
//   ... stop();
//
// Authentication, one of:
// - `token` (a string) or `getToken` (a function, may be async, called before every connection, so a
//   refreshed session is picked up on reconnect): a FedML API token or a Supabase access token, offered
//   as the websocket subprotocols ["fedml", "bearer.<token>"] (browsers cannot set headers on a websocket,
//   and a token in the URL would end up in logs). Use it when FedML is on another origin than the page.
// - neither: the cookies of FedML's origin (the Django session of FedML's admin, or the dashboard's
//   `sb-<ref>-auth-token` cookie when FedML is reached on the dashboard's own host).
// FedML checks the page's Origin against its ALLOWED_HOSTS in any case.

const SUBPROTOCOL = "fedml";
const BEARER_PREFIX = "bearer.";
const SESSION_COOKIE = /^sb-(.+)-auth-token(?:\.(\d+))?$/;

function base64UrlToText(value) {
  const b64 = value.replace(/[\s=]/g, "").replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return new TextDecoder().decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
}

function sessionToken(raw) {
  let text = raw;
  if (raw.startsWith("base64-")) text = base64UrlToText(raw.slice("base64-".length));
  else if (!raw.trimStart().startsWith("{") && !raw.trimStart().startsWith("[")) text = decodeURIComponent(raw);
  const session = JSON.parse(text);
  if (Array.isArray(session)) return session[0] || null; // auth-helpers' [access_token, refresh_token, ...]
  return session?.access_token || session?.currentSession?.access_token || null;
}

// The access token of the Supabase session that @supabase/ssr keeps in the cookie `sb-<ref>-auth-token`
// (`base64-` + base64url(JSON), split into `.0`, `.1`, ... when long), or null if there is none.
// `ref` picks one project's cookie (the first label of NEXT_PUBLIC_SUPABASE_URL's host: "localhost",
// "abcd" for https://abcd.supabase.co); without it the first readable session is used.
// The cookie is not HttpOnly, so a page on the dashboard's origin can read it.
export function supabaseAccessToken(cookieString = globalThis.document?.cookie ?? "", ref = null) {
  const groups = {}; // ref -> {whole, chunks: {index: value}}
  for (const pair of cookieString.split(";")) {
    const at = pair.indexOf("=");
    if (at < 0) continue;
    const match = SESSION_COOKIE.exec(pair.slice(0, at).trim());
    if (!match) continue;
    const group = (groups[match[1]] ??= { whole: null, chunks: {} });
    const value = pair.slice(at + 1).trim();
    if (match[2] === undefined) group.whole = value;
    else group.chunks[match[2]] = value;
  }
  for (const name of ref ? [ref] : Object.keys(groups).sort()) {
    const group = groups[name];
    if (!group) continue;
    let raw = group.whole;
    if (!raw) {
      const parts = [];
      while (group.chunks[parts.length]) parts.push(group.chunks[parts.length]);
      raw = parts.join("");
    }
    if (!raw) continue;
    try {
      const token = sessionToken(raw);
      if (token) return token;
    } catch {
      // not a readable session: try the next cookie
    }
  }
  return null;
}

export function followFedML(
  url,
  { token = null, getToken = null, onLines = () => {}, onEvents = () => {}, onEnd = () => {}, onStatus = () => {} } = {},
) {
  const cursors = {}; // follow name -> last seq processed
  let socket = null;
  let stopped = false;
  let retry = 500;

  function resumeUrl() {
    const u = new URL(url);
    for (const [follow, seq] of Object.entries(cursors)) {
      const [kind, id] = follow.split(":");
      // A run's own log and single streams use `after`; a run's sessions use `after.<session id>`.
      if (kind === "session" && u.pathname.includes("/ws/runs/")) u.searchParams.set(`after.${id}`, seq);
      else u.searchParams.set("after", seq);
    }
    return u.toString();
  }

  function reconnectLater() {
    if (stopped) return;
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 10000);
  }

  async function connect() {
    let bearer = token;
    if (getToken) {
      try {
        bearer = await getToken();
      } catch (error) {
        onStatus(`token: ${error}`);
        reconnectLater();
        return;
      }
    }
    if (stopped) return;
    let received = 0;
    socket = bearer ? new WebSocket(resumeUrl(), [SUBPROTOCOL, BEARER_PREFIX + bearer]) : new WebSocket(resumeUrl());
    socket.onopen = () => { retry = 500; onStatus("open"); };
    socket.onmessage = (message) => {
      const msg = JSON.parse(message.data);
      switch (msg.type) {
        case "hello":
          msg.follows.forEach((f) => { if (!(f.name in cursors)) cursors[f.name] = f.cursor; });
          break;
        case "lines":
        case "events": {
          const items = msg[msg.type];
          // Drop anything at or below our cursor (cannot happen with a correct `after`, but cheap).
          const fresh = items.filter((item) => item.seq > (cursors[msg.follow] ?? 0));
          if (fresh.length) (msg.type === "lines" ? onLines : onEvents)(msg.follow, fresh);
          cursors[msg.follow] = msg.last_seq;
          received += items.length;
          socket.send(JSON.stringify({ type: "ack", received }));
          break;
        }
        case "behind":
          onStatus(`behind on ${msg.follow}: at ${msg.cursor}, newest ${msg.head}`);
          break;
        case "eof":
          cursors[msg.follow] = msg.last_seq;
          onEnd(msg.follow, msg.status);
          break;
        case "error":
          onStatus(`error: ${msg.detail}`);
          break;
      }
    };
    socket.onclose = (event) => {
      onStatus(`closed ${event.code}`);
      // 1000: everything ended. 44xx: not allowed or bad request; retrying will not help.
      if (event.code === 1000 || (event.code >= 4400 && event.code < 4500)) return;
      reconnectLater();
    };
  }

  connect();
  return () => { stopped = true; socket && socket.close(); };
}
