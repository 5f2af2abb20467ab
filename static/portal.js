// Copy buttons: <button data-copy="element-id">. No dependencies.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  if (!field) return;
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(field.value);
  } catch {
    // Clipboard API unavailable (plain http, old browser): select it for Ctrl+C instead.
    field.focus();
    field.select();
    button.textContent = "Press Ctrl+C";
    return;
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 2000);
});

// Approvals and checks under way: <span data-check-url="…REST API server…">. A task does them;
// poll until each has finished, then reload to show the outcome (unless something is being
// typed on the page: then say so, and leave the reload to the reader). Without JavaScript,
// the "Refresh" link next to each does the same.
(() => {
  const pending = () => [...document.querySelectorAll("[data-check-url]")];
  if (!pending().length) return;
  let typed = false;
  document.addEventListener("input", () => { typed = true; });
  let polls = 0;
  const underWay = async (element) => {
    try {
      const response = await fetch(element.dataset.checkUrl, { headers: { Accept: "application/json" } });
      if (!response.ok) return false; // removed, or no longer ours to see: stop asking
      return (await response.json()).checking;
    } catch {
      return true; // the network blinked: ask again
    }
  };
  const poll = async () => {
    polls += 1;
    const states = await Promise.all(pending().map(underWay));
    if (states.some(Boolean)) {
      if (polls < 100) setTimeout(poll, 3000); // about five minutes, as long as a check may take
      return;
    }
    if (!typed) {
      window.location.reload();
      return;
    }
    for (const element of pending()) {
      element.querySelector(".status").textContent = "Finished";
      element.querySelector("a").textContent = "Refresh to see the result";
    }
  };
  setTimeout(poll, 2000);
})();

// Deploy forms on the Hosted tab: <form data-deploy-form>. Its button stays disabled until
// every required input has a value (spaces alone do not count), with a hint saying why, and
// once pressed (a deploy waits seconds for the server's health check: one click, one deploy).
// Without JavaScript the button works and the server names what is missing.
(() => {
  for (const form of document.querySelectorAll("form[data-deploy-form]")) {
    const button = form.querySelector("button[type=submit]");
    if (!button) continue;
    const hint = form.querySelector("[data-fill-hint]");
    const required = [...form.querySelectorAll("input[required], select[required], textarea[required]")];
    const label = button.textContent;
    const update = () => {
      const missing = required.some((input) => !input.value.trim());
      button.disabled = missing;
      button.textContent = label;
      if (hint) hint.hidden = !missing;
    };
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    form.addEventListener("submit", () => {
      button.disabled = true;
      button.textContent = label.trim() === "Deploy" ? "Deploying…" : "Sending…";
    });
    // Back to this page from the browser's cache: the button as the inputs say, not "Deploying…".
    window.addEventListener("pageshow", (event) => event.persisted && update());
    update();
  }
})();
