(function () {
  "use strict";
  var form = document.getElementById("filters");
  var query = document.getElementById("host-filter");
  var shown = document.getElementById("shown");
  var rows = document.querySelectorAll("#rows .row");
  var failures = document.querySelectorAll("#failures .failure");
  function apply() {
    var on = {};
    form.querySelectorAll("input[name=status]").forEach(function (c) { on[c.value] = c.checked; });
    var q = query.value.trim().toLowerCase();
    var keep = function (el) {
      return on[el.dataset.status] && (q === "" || el.dataset.host.toLowerCase().indexOf(q) >= 0);
    };
    var n = 0;
    rows.forEach(function (r) { var k = keep(r); r.hidden = !k; if (k) { n++; } });
    failures.forEach(function (f) { f.hidden = !keep(f); });
    shown.textContent = n + " of " + rows.length + " hosts shown";
  }
  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  apply();
  // A bar's title shows on hover; on keyboard focus the same text shows beside it.
  var tip = document.getElementById("tip");
  document.addEventListener("focusin", function (e) {
    var b = e.target;
    if (!b.classList || !b.classList.contains("bar")) { return; }
    var r = b.getBoundingClientRect();
    tip.textContent = b.title;
    tip.hidden = false;
    tip.style.left = Math.max(0, r.left + window.scrollX) + "px";
    tip.style.top = (r.bottom + window.scrollY + 4) + "px";
  });
  document.addEventListener("focusout", function () { tip.hidden = true; });
})();
