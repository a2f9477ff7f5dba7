// The console's only script (no inline script: the Content-Security-Policy forbids it).
document.addEventListener("DOMContentLoaded", () => {
  // tip queue: one box ticks every tip on the page
  const all = document.getElementById("tick-all");
  if (all) {
    all.addEventListener("change", () => {
      document.querySelectorAll('.tips input[name="tip"]').forEach((box) => { box.checked = all.checked; });
    });
  }
  // closing a case cannot be undone: ask first
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
});
