// Copy buttons for a password or token shown once: <button class="copy" data-copy="#id">.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button.copy[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  const text = source.textContent.trim();
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // No clipboard permission (plain http on another host): select it for Ctrl+C instead.
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
  button.dataset.copied = "";
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; delete button.dataset.copied; }, 2000);
});
