// Live updates of the access log: the page works without this; with it, each new entry the
// server sends (a table row it rendered and escaped) appears at the top within a second.
"use strict";
(function () {
  var body = document.getElementById("entries");
  if (!body || !body.dataset.liveAfter || !window.EventSource) {
    return;
  }
  var others = body.dataset.others ? "&others=1" : "";
  var source = new EventSource("/portal/access-log/live?after=" + encodeURIComponent(body.dataset.liveAfter) + others);
  source.addEventListener("entry", function (event) {
    var holder = document.createElement("tbody");
    holder.innerHTML = event.data;
    var row = holder.firstElementChild;
    if (row && !body.querySelector('tr[data-entry="' + row.dataset.entry + '"]')) {
      body.insertBefore(row, body.firstElementChild);
    }
  });
  // A session that ended answers 401, which closes the stream for good; a network failure
  // is retried by the browser.
})();
