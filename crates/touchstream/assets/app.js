// touchstream serve: the page works without this script; with it, the model picker applies
// at once and each chart is redrawn by the server for the width it really has (a phone gets
// phone-sized text and layout instead of a shrunk desktop chart). Nothing is fetched from
// anywhere but this server.
(function () {
  'use strict';

  var form = document.querySelector('form.controls');
  if (form) {
    var model = form.querySelector('select[name=model]');
    if (model) {
      model.addEventListener('change', function () {
        form.submit();
      });
    }
  }

  var pending = 0;
  function settle() {
    if (pending === 0) document.documentElement.setAttribute('data-charts', 'ready');
  }

  function fit() {
    var boxes = document.querySelectorAll('.chart[data-src]');
    for (var i = 0; i < boxes.length; i++) {
      var box = boxes[i];
      var svg = box.querySelector('svg');
      var want = Math.floor(box.clientWidth);
      if (!svg || !want) continue;
      var have = Number(svg.getAttribute('data-width'));
      if (Math.abs(want - have) < 24 || box.getAttribute('data-asked') === String(want)) continue;
      box.setAttribute('data-asked', String(want));
      pending++;
      document.documentElement.setAttribute('data-charts', 'loading');
      redraw(box, want);
    }
    settle();
  }

  function redraw(box, width) {
    fetch(box.getAttribute('data-src') + '&width=' + width, { credentials: 'same-origin' })
      .then(function (response) {
        if (!response.ok) throw new Error('HTTP ' + response.status);
        return response.text();
      })
      .then(function (text) {
        // Only the answer for the latest width asked counts.
        if (box.getAttribute('data-asked') === String(width)) box.innerHTML = text;
      })
      .catch(function () {
        // The chart drawn with the page stays; it only scales.
      })
      .then(function () {
        pending--;
        settle();
      });
  }

  var timer = null;
  window.addEventListener('resize', function () {
    clearTimeout(timer);
    timer = setTimeout(fit, 150);
  });
  fit();
})();
