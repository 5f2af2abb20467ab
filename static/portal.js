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
