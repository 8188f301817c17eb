// Drives Debian's Chromium through the web report (`touchstream serve`) for
// tests/tests/webreport.rs, which starts the servers on a fixture and compares what this script
// reads off the page with `touchstream report`. At 1280×800: loads the page, switches the
// model, changes the period, downloads a CSV; on a phone (390×844): loads it again; then the
// empty and the ClickHouse-down pages. Saves a screenshot of each. Prints one JSON summary.
//
//   TOUCHSTREAM_PAGE_URL=http://127.0.0.1:8090 TOUCHSTREAM_SCREENSHOTS=/tmp/shots node webreport.mjs
//
// Env: TOUCHSTREAM_PAGE_URL (required), TOUCHSTREAM_EMPTY_URL and TOUCHSTREAM_DOWN_URL
// (servers on an empty database and on a dead ClickHouse; optional), TOUCHSTREAM_SCREENSHOTS
// (required), TOUCHSTREAM_QUERY (the first state; default January 2026, last_non_direct),
// CHROMIUM_PATH (default /usr/bin/chromium).

import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch } from './chromium.mjs';

const base = process.env.TOUCHSTREAM_PAGE_URL;
const emptyBase = process.env.TOUCHSTREAM_EMPTY_URL;
const downBase = process.env.TOUCHSTREAM_DOWN_URL;
const shots = process.env.TOUCHSTREAM_SCREENSHOTS;
const query = process.env.TOUCHSTREAM_QUERY || 'model=last_non_direct&from=2026-01-01&to=2026-01-31';

const fail = (msg) => {
  console.error(`webreport.mjs: ${msg}`);
  process.exit(1);
};
if (!base) fail('set TOUCHSTREAM_PAGE_URL to the base URL of touchstream serve');
if (!shots) fail('set TOUCHSTREAM_SCREENSHOTS to a folder for the screenshots');
setTimeout(() => fail('gave up after 120 s'), 120_000).unref();
mkdirSync(shots, { recursive: true });

const ours = [base, emptyBase, downBase].filter(Boolean);
const foreign = [];
const errors = [];
const screenshots = [];

function watch(page, { collectErrors = true } = {}) {
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith('data:') && !ours.some((o) => url.startsWith(o))) foreign.push(url);
  });
  if (collectErrors) {
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => (m.type() === 'error' || m.type() === 'warning') && errors.push(m.text()));
  }
}

// The charts are redrawn for their width by the page's script; it marks the page when done.
const chartsReady = (page) =>
  page.waitForFunction(() => document.documentElement.getAttribute('data-charts') === 'ready', null, { timeout: 20_000 });

async function shoot(page, name) {
  const path = join(shots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  screenshots.push(path);
}

// Everything the test compares: per figure, every bar and point with its data, the table of
// numbers under it, and how it is drawn.
function read(page) {
  return page.evaluate(() => {
    const figures = {};
    for (const section of document.querySelectorAll('section.figure')) {
      const box = section.querySelector('.chart');
      const svg = box ? box.querySelector('svg') : null;
      figures[section.dataset.figure] = {
        empty: section.dataset.empty,
        marks: [...section.querySelectorAll('.chart .bar, .chart .point')].map((e) => ({
          kind: e.classList.contains('bar') ? 'bar' : 'point',
          series: e.dataset.series,
          category: e.dataset.category,
          value: Number(e.dataset.value),
          fill: e.getAttribute('fill'),
        })),
        table: {
          columns: [...section.querySelectorAll('table thead th')].map((t) => t.textContent),
          rows: [...section.querySelectorAll('table tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent)),
        },
        legend: section.querySelectorAll('.legend-item').length,
        axis_labels: section.querySelectorAll('.axis-label').length,
        band: section.querySelectorAll('.band').length,
        band_label: section.querySelector('.band-label') ? section.querySelector('.band-label').textContent : null,
        svg_width: svg ? Number(svg.dataset.width) : null,
        rendered_width: svg ? svg.getBoundingClientRect().width : null,
      };
    }
    const value = (selector) => (document.querySelector(selector) ? document.querySelector(selector).value : null);
    const text = (selector) => (document.querySelector(selector) ? document.querySelector(selector).innerText : null);
    return {
      url: location.href,
      title: document.title,
      model: value('select[name=model]'),
      from: value('input[name=from]'),
      to: value('input[name=to]'),
      banner: text('.banner.error'),
      empty_state: text('.empty-state'),
      has_form: !!document.querySelector('form.controls'),
      figures,
      scroll_width: document.documentElement.scrollWidth,
      inner_width: window.innerWidth,
    };
  });
}

const { browser } = await launch({ fail });

const states = {};
let csv = null;
let empty = null;
let down = null;
try {
  // 1280×800: the page, then another model (the picker submits itself), then another period.
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  const page = await desktop.newPage();
  watch(page);
  const first = await page.goto(`${base}/site/default?${query}`);
  if (first.status() !== 200) fail(`the page answered ${first.status()}`);
  await chartsReady(page);
  states.initial = await read(page);
  await shoot(page, 'desktop-last_non_direct');

  await Promise.all([page.waitForURL(/model=first_touch/), page.selectOption('select[name=model]', 'first_touch')]);
  await chartsReady(page);
  states.first_touch = await read(page);
  await shoot(page, 'desktop-first_touch');

  await page.fill('input[name=from]', '2026-01-10');
  await Promise.all([page.waitForURL(/from=2026-01-10/), page.click('form.controls button[type=submit]')]);
  await chartsReady(page);
  states.from_jan_10 = await read(page);
  await shoot(page, 'desktop-first_touch-from-jan-10');

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#source-of-sale a.csv')]);
  csv = readFileSync(await download.path(), 'utf8');
  await desktop.close();

  // A phone: the charts are redrawn for its width.
  const phone = await browser.newContext({
    viewport: { width: 390, height: 844 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  const small = await phone.newPage();
  watch(small);
  await small.goto(`${base}/site/default?${query}`);
  await chartsReady(small);
  states.phone = await read(small);
  await shoot(small, 'phone-last_non_direct');
  await phone.close();

  if (emptyBase) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const p = await context.newPage();
    watch(p);
    const response = await p.goto(`${emptyBase}/site/default?${query}`);
    empty = { status: response.status(), ...(await read(p)) };
    await shoot(p, 'empty-database');
    await context.close();
  }
  if (downBase) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const p = await context.newPage();
    // The 503 itself is logged by Chromium as a failed load: not an error of the page.
    watch(p, { collectErrors: false });
    const response = await p.goto(`${downBase}/site/default?${query}`);
    down = { status: response.status(), ...(await read(p)) };
    await shoot(p, 'clickhouse-down');
    await context.close();
  }
} finally {
  await browser.close();
}

console.log(
  JSON.stringify({
    states,
    csv,
    empty,
    down,
    screenshots,
    foreign_requests: foreign,
    page_errors: errors,
  })
);
