// The live deploy console of a hosted instance's page (templates/portal/hosting_instance.html).
//
// The page is complete without this script: the status and the last lines as of its load.
// This follows them over the WebSocket of apps/hosting/consumers.py. The server sends, and
// the browser only listens:
//   {kind: "snapshot", status, status_label, healthy, settled, error, lines, cursor}  first,
//   {kind: "log", lines, cursor}   new lines; one whose cursor is not past the last seen is old,
//   {kind: "status", status, status_label, healthy, settled, error}.
// A refused connection is closed with 4404. The console closes itself once nothing more is
// to come: the instance settled (rejected, failed, stopped), or it runs and is healthy.
// A server that does not speak WebSocket (a plain WSGI server) leaves the page as it was.
(() => {
  const pane = document.querySelector("pre[data-console]");
  if (!pane || !("WebSocket" in window)) return;

  const REFUSED = 4404;
  const MAX_LINES = 2000; // kept in the pane; older lines scroll away
  const RETRIES = 5; // after a drop; backing off 1, 2, 4, 8, 16 seconds

  const state = document.querySelector("[data-console-state]");
  const badge = document.querySelector("[data-console-status]");
  const health = document.querySelector("[data-console-health]");
  const failure = document.querySelector("[data-console-error]");
  const empty = document.querySelector("[data-console-empty]");
  const outcomes = [...document.querySelectorAll("[data-outcome]")];

  const loaded = {
    status: pane.dataset.status,
    healthy: pane.dataset.healthy === "true",
    settled: pane.dataset.settled === "true",
  };
  let current = loaded;
  let cursor = Number(pane.dataset.cursor || 0);
  let lines = pane.textContent ? pane.textContent.split("\n") : [];
  let socket = null;
  let opened = false; // this page has been connected at least once
  let retries = 0;
  let finished = false;

  const final = (s) => s.settled || (s.status === "running" && s.healthy);

  const say = (text, { reload = false } = {}) => {
    if (!state) return;
    state.textContent = text;
    if (reload) {
      const link = document.createElement("a");
      link.href = window.location.href;
      link.textContent = "Reload for its current actions";
      state.append(" ", link);
    }
  };

  // As apps/portal/views/hosting.py's _shown and _outcome.
  const badgeClass = (s) => {
    if (s.status === "running") return s.healthy ? "active" : "pending";
    if (s.status === "failed") return "failed";
    if (s.status === "stopped" || s.status === "rejected") return "revoked";
    return "pending";
  };
  const outcomeOf = (s) => {
    if (s.status === "running") return s.healthy ? "healthy" : "starting";
    if (s.status === "pending" || s.status === "starting") return "starting";
    return s.status;
  };

  const atBottom = () => pane.scrollHeight - pane.scrollTop - pane.clientHeight < 8;

  const showLines = (added, { replace = false } = {}) => {
    const follow = atBottom();
    lines = replace ? [...added] : lines.concat(added);
    if (lines.length > MAX_LINES || replace) {
      lines = lines.slice(-MAX_LINES);
      pane.textContent = lines.join("\n");
    } else if (added.length) {
      // Appended, not rewritten: a screen reader announces only the new lines (role="log").
      pane.append(document.createTextNode((pane.textContent ? "\n" : "") + added.join("\n")));
    }
    if (empty) empty.hidden = lines.length > 0;
    if (follow) pane.scrollTop = pane.scrollHeight;
  };

  const showStatus = (s) => {
    current = s;
    if (badge) {
      badge.textContent = s.status_label;
      badge.className = `status ${badgeClass(s)}`;
    }
    if (health) health.textContent = s.status === "running" ? (s.healthy ? "healthy" : "not healthy") : "";
    const shown = outcomeOf(s);
    for (const outcome of outcomes) outcome.hidden = outcome.dataset.outcome !== shown;
    if (failure) {
      failure.hidden = !s.error;
      failure.querySelector("pre").textContent = s.error || "";
    }
  };

  const finish = () => {
    finished = true;
    const changed = current.status !== loaded.status || current.healthy !== loaded.healthy;
    const why = current.settled ? `${current.status_label}, nothing more will happen to it` : "it runs and is healthy";
    say(`Closed: ${why}.`, { reload: changed });
    if (socket) socket.close(1000);
  };

  const connect = () => {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${window.location.host}${pane.dataset.console}`);
    say(opened ? "Reconnecting…" : "Connecting…");

    socket.addEventListener("open", () => {
      opened = true;
      retries = 0;
      say("Connected: following it live.");
    });

    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // not ours
      }
      if (message.kind === "snapshot") {
        // The snapshot is where things stand now: it replaces what the page was loaded with.
        showLines(message.lines || [], { replace: true });
        cursor = message.cursor;
        showStatus(message);
      } else if (message.kind === "log") {
        if (message.cursor <= cursor) return; // already shown (by the snapshot)
        cursor = message.cursor;
        showLines(message.lines || []);
      } else if (message.kind === "status") {
        showStatus(message);
      } else {
        return;
      }
      if (final(current)) finish();
    });

    socket.addEventListener("close", (event) => {
      socket = null;
      if (finished) return;
      if (event.code === REFUSED) {
        say("Closed: this console is not available to you any more. Reload the page.");
        return;
      }
      if (!opened) {
        // Never connected: this server does not offer the live console (e.g. a WSGI server).
        say("Closed: live updates are not available here, so this is the state when the page loaded. Reload for newer lines.");
        return;
      }
      if (retries >= RETRIES) {
        say("Closed: the connection was lost. Reload the page to follow it again.");
        return;
      }
      const delay = 1000 * 2 ** retries;
      retries += 1;
      say(`Closed: the connection was lost; reconnecting in ${delay / 1000} s…`);
      setTimeout(connect, delay);
    });
  };

  connect();
})();
