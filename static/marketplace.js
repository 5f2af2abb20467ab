// A server's page: pressing a copy button (or an "Add to <client>" link) counts an install.
// The copy itself is portal.js's; this only tells the server, once per press, and never
// gets in the way: a refused or failed count changes nothing on the page.
// <script src="marketplace.js" data-install-url="…/installs/" data-csrf-token="…">
(() => {
  const script = document.currentScript;
  const url = script && script.dataset.installUrl;
  const token = script && script.dataset.csrfToken;
  if (!url || !token) return;
  document.addEventListener("click", (event) => {
    const control = event.target.closest("[data-install-via]");
    if (!control) return;
    const body = new URLSearchParams({ via: control.dataset.installVia });
    // keepalive: an "Add to Cursor" link leaves the page, and the count must still arrive.
    fetch(url, {
      method: "POST",
      body,
      headers: { "X-CSRFToken": token, Accept: "application/json" },
      credentials: "same-origin",
      keepalive: true,
    }).catch(() => {});
  });
})();
