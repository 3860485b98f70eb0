// Minimal FedML stream client (browser or Node >= 22, which has a global WebSocket).
// Follows a log or event stream, acknowledges what it receives, and resumes after a disconnect
// from the last sequence number of each follow: no gap, no duplicate.
//
//   const stop = followFedML("wss://fedml.example.org/ws/runs/<run-id>/logs/", {
//     onLines: (follow, lines) => lines.forEach((l) => console.log(follow, l.seq, l.text)),
//     onEvents: (follow, events) => events.forEach((e) => console.log(e.type, e.payload)),
//     onEnd: (follow, status) => console.log(follow, "ended", status),
//   });
//   ... stop();
//
// Authentication is the Django session cookie of the page's origin.

export function followFedML(url, { onLines = () => {}, onEvents = () => {}, onEnd = () => {}, onStatus = () => {} } = {}) {
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

  function connect() {
    let received = 0;
    socket = new WebSocket(resumeUrl());
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
      if (stopped || event.code === 1000 || (event.code >= 4400 && event.code < 4500)) return;
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }

  connect();
  return () => { stopped = true; socket && socket.close(); };
}
