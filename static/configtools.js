// The composer's search as you type: <input data-compose-search="<REST search URL>"> inside
// the composer's form fills #compose-results with "Add" buttons, which submit the form
// (a POST, so the servers already chosen and their placeholders stay). Without JavaScript
// the form's own Search button does the same on the server. No dependencies.
(() => {
  const input = document.querySelector("input[data-compose-search]");
  const list = document.getElementById("compose-results");
  if (!input || !list) return;
  let timer = null;
  let latest = 0;

  const show = (servers) => {
    list.replaceChildren(...servers.map((server) => {
      const item = document.createElement("li");
      const add = document.createElement("button");
      add.type = "submit";
      add.name = "add";
      add.value = server.name;
      add.textContent = "Add";
      const name = document.createElement("code");
      name.textContent = server.name;
      item.append(add, " ", name, " ", (server.title || server.description || "").slice(0, 90));
      return item;
    }));
  };

  const find = async () => {
    const q = input.value.trim();
    const asked = ++latest;
    if (q.length < 2) { show([]); return; }
    const url = new URL(input.dataset.composeSearch, window.location.href);
    url.searchParams.set("q", q);
    url.searchParams.set("page_size", "10");
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok || asked !== latest) return;
      const page = await response.json();
      if (asked === latest) show(page.results || []);
    } catch {
      // Offline or refused: the Search button still works.
    }
  };

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(find, 200);
  });
  // Enter in the search box searches, rather than submitting whichever button comes first.
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      clearTimeout(timer);
      find();
    }
  });
})();
