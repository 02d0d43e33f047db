/* dgnam atlas: the search box and a check that every image loaded. Plain JavaScript, no network.
 * Cards carry data-search="unit label layer"; every word typed must occur in a card for it to show.
 * A query can come in the address: index.html#q=bell%20pepper.
 * <body data-shown="N" data-broken-images="M"> report what is visible and how many images failed. */
(function () {
  "use strict";
  var broken = 0;

  document.addEventListener("error", function (event) {
    var el = event.target;
    if (el && el.tagName === "IMG") {
      broken += 1;
      el.classList.add("broken");
      if (document.body) document.body.setAttribute("data-broken-images", String(broken));
    }
  }, true);

  function words(text) {
    return text.toLowerCase().split(/\s+/).filter(function (w) { return w.length > 0; });
  }

  function filter(input) {
    var wanted = words(input.value);
    var cards = document.querySelectorAll("[data-search]");
    var shown = 0;
    for (var i = 0; i < cards.length; i++) {
      var text = cards[i].getAttribute("data-search").toLowerCase();
      var ok = wanted.every(function (w) { return text.indexOf(w) >= 0; });
      cards[i].hidden = !ok;
      if (ok) shown += 1;
    }
    var count = document.getElementById("count");
    if (count) count.textContent = shown + " of " + cards.length + " units";
    document.body.setAttribute("data-shown", String(shown));
  }

  function queryFromAddress() {
    var match = /(?:^#|&)q=([^&]*)/.exec(window.location.hash);
    if (!match) return "";
    try {
      return decodeURIComponent(match[1].replace(/\+/g, " "));
    } catch (e) {
      return "";
    }
  }

  function keys(event) {
    if (event.target && (event.target.tagName === "INPUT" || event.target.tagName === "TEXTAREA")) return;
    var id = event.key === "ArrowLeft" ? "prev" : event.key === "ArrowRight" ? "next" : null;
    var link = id && document.getElementById(id);
    if (link && link.href) window.location.href = link.href;
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.body.setAttribute("data-broken-images", String(broken));
    var input = document.getElementById("search");
    if (input) {
      input.value = queryFromAddress() || input.value;
      input.addEventListener("input", function () { filter(input); });
      filter(input);
    }
    document.addEventListener("keydown", keys);
  });
})();
