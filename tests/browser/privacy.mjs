// Drives Debian's Chromium through t.js's consent and cookieless modes on a fake shop that
// installs t.js from the real collector, for tests/tests/browser.rs (which checks ClickHouse).
// Records every request a page makes to the collector, the cookies and Web Storage of the shop
// after each step, and prints one JSON summary on stdout.
//
//   TOUCHSTREAM_COLLECTOR_URL=http://127.0.0.1:8080 TOUCHSTREAM_CLOCK_FILE=/tmp/clock \
//   TOUCHSTREAM_MIDNIGHT_MS=1795651200000 node tests/browser/privacy.mjs
//
// Env: TOUCHSTREAM_COLLECTOR_URL (required); TOUCHSTREAM_CLOCK_FILE (required: the collector's
// cookieless.test_clock_file, written here to move the collector across midnight);
// TOUCHSTREAM_MIDNIGHT_MS (required: the midnight, UTC, crossed); CHROMIUM_PATH (default
// /usr/bin/chromium).

import http from 'node:http';
import { writeFileSync } from 'node:fs';
import { launch } from './chromium.mjs';
import { acceptedByCollector, untilAccepted } from './collector.mjs';

const collector = process.env.TOUCHSTREAM_COLLECTOR_URL;
const clockFile = process.env.TOUCHSTREAM_CLOCK_FILE;
const midnight = Number(process.env.TOUCHSTREAM_MIDNIGHT_MS);
const ORDER_ID = process.env.TOUCHSTREAM_ORDER_ID || `o-privacy-${Date.now()}`;
// What the collector must accept: the consent journeys (2 + 1 + 1), the localStorage one (1),
// the cookieless visits (2 + 1 + 1 + 1).
const EXPECTED_EVENTS = 10;
// Longer than the tracker's one-second batching delay: anything it meant to send has left.
const SETTLE_MS = 2_500;

const fail = (msg) => {
  console.error(`privacy.mjs: ${msg}`);
  process.exit(1);
};
if (!collector) fail('set TOUCHSTREAM_COLLECTOR_URL to the collector base URL');
if (!clockFile || !midnight) fail('set TOUCHSTREAM_CLOCK_FILE and TOUCHSTREAM_MIDNIGHT_MS');
setTimeout(() => fail('gave up after 150 s'), 150_000).unref();

const tracker = (attrs) => `<script async src="${collector}/t.js" data-site-hosts="shop.example" ${attrs}></script>`;
const page = (title, head = '') =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title>${head}</head><body><p>${title}</p></body></html>`;
const sites = {
  '/consent/a': page('consent a', tracker('data-consent="required"')),
  '/consent/b': page('consent b', tracker('data-consent="required"')),
  '/consent/ls': page('consent ls', tracker('data-consent="required" data-storage="localstorage"')),
  '/cookieless/1': page('cookieless 1', tracker('data-consent="cookieless"')),
  '/cookieless/2': page('cookieless 2', tracker('data-consent="cookieless"')),
  '/cookieless/3': page('cookieless 3', tracker('data-consent="cookieless"')),
  '/cookieless/4': page('cookieless 4', tracker('data-consent="cookieless"')),
  '/blank': page('blank'),
};

const server = http.createServer((req, res) => {
  const body = sites[new URL(req.url, 'http://x').pathname];
  if (body === undefined) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    return res.end('no such page');
  }
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(body);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = server.address().port;
const shop = `http://shop.example:${port}`;

const { browser } = await launch({ hosts: ['shop.example'], desktopUserAgent: true, fail });

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const errors = [];
// Every request to the collector's event route, from any page of any context.
const sent = [];
async function newContext() {
  const c = await browser.newContext();
  c.on('request', (r) => {
    if (!r.url().startsWith(`${collector}/v1/events`)) return;
    let events = [];
    try {
      events = JSON.parse(r.postData() || '[]');
    } catch (e) {}
    sent.push({ url: r.url(), page: events.map((e) => new URL(e.page_url).pathname), events });
  });
  return c;
}
async function open(context, path) {
  const p = await context.newPage();
  p.on('pageerror', (e) => errors.push(String(e)));
  p.on('console', (m) => m.type() === 'warning' && errors.push(m.text()));
  await goto(p, path);
  return p;
}
async function goto(p, path) {
  await p.goto(`${shop}${path}`);
  await p.waitForFunction(() => window.touchstream && typeof window.touchstream.consent === 'function');
}
// What the shop keeps in the browser: its cookies and both Web Storages.
async function stored(context) {
  const p = await context.newPage();
  await p.goto(`${shop}/blank`);
  const storage = await p.evaluate(() => ({
    local: Object.keys(localStorage),
    session: Object.keys(sessionStorage),
  }));
  await p.close();
  const cookies = (await context.cookies(`${shop}/`)).map((c) => ({ name: c.name, value: c.value }));
  return { cookies, ...storage };
}
const cookie = async (context) => ((await context.cookies(`${shop}/`)).find((c) => c.name === 'ts_aid') || {}).value;
const answered = (p) => p.waitForResponse((r) => r.url().startsWith(`${collector}/v1/events`), { timeout: 15_000 });
async function status(responsePromise) {
  const r = await responsePromise;
  return { status: r.status(), body: await r.json() };
}

const acceptedBefore = await acceptedByCollector(collector);
try {
  // Consent required, cookie storage.
  const c = await newContext();
  // Page a: its landing and a signup are held in memory, then the visitor leaves without
  // consenting: they are dropped (not beaconed on pagehide).
  const p = await open(c, '/consent/a?utm_source=newsletter&utm_medium=email');
  await p.evaluate(() => {
    touchstream.track('signup', { signup_kind: 'newsletter', method: 'email' });
    touchstream.flush();
  });
  await goto(p, '/consent/b?utm_source=partner&utm_medium=referral');
  await p.evaluate((order) => touchstream.track('purchase', { order_id: order, revenue: 1999, currency: 'EUR' }), ORDER_ID);
  await sleep(SETTLE_MS);
  const beforeConsent = { requests: sent.length, stored: await stored(c) };
  // Consent: the held landing of page b and the purchase leave, with the stored id.
  let flushed = answered(p);
  await p.evaluate(() => touchstream.consent(true));
  const consentAnswer = await status(flushed);
  const consented = { id: await cookie(c), answer: consentAnswer, stored: await stored(c) };
  // The next page asks again (the site's consent banner remembers the answer and calls
  // consent(true) on every page): the same id.
  await goto(p, '/consent/b?page=2');
  flushed = answered(p);
  await p.evaluate(() => touchstream.consent(true));
  await flushed;
  const nextPage = { id: await cookie(c) };
  // Refusal: the id and everything stored go, nothing more is sent.
  const sentBeforeRefusal = sent.length;
  await p.evaluate(() => {
    touchstream.consent(false);
    touchstream.track('signup', { signup_kind: 'newsletter', method: 'email' });
    touchstream.flush();
  });
  await sleep(SETTLE_MS);
  const refused = { requests: sent.length - sentBeforeRefusal, stored: await stored(c) };
  // Consent given again later: a new visitor.
  await goto(p, '/consent/b?page=3');
  flushed = answered(p);
  await p.evaluate(() => touchstream.consent(true));
  await flushed;
  const again = { id: await cookie(c) };
  await p.close();

  // Consent required, localStorage.
  const l = await newContext();
  const lp = await open(l, '/consent/ls');
  await sleep(SETTLE_MS);
  const lsBefore = await stored(l);
  flushed = answered(lp);
  await lp.evaluate(() => touchstream.consent(true));
  await flushed;
  const lsId = await lp.evaluate(() => localStorage.getItem('ts_aid'));
  const lsConsented = await stored(l);
  await lp.evaluate(() => touchstream.consent(false));
  const lsRefused = await stored(l);
  await lp.close();

  // Cookieless: the collector's clock a minute before midnight, then a minute after.
  const cookieless = [];
  const visit = async (context, path, extra) => {
    const vp = await context.newPage();
    vp.on('pageerror', (e) => errors.push(String(e)));
    const landing = answered(vp);
    await goto(vp, path);
    const r = await status(landing);
    if (extra) {
      const more = answered(vp);
      await vp.evaluate(extra);
      r.extra = await status(more);
    }
    await vp.close();
    cookieless.push({ path, ...r });
  };
  writeFileSync(clockFile, String(midnight - 60_000));
  const k1 = await newContext();
  await visit(k1, '/cookieless/1', () => {
    touchstream.track('signup', { signup_kind: 'newsletter', method: 'email' });
    touchstream.flush();
  });
  const k2 = await newContext();
  await visit(k2, '/cookieless/2');
  writeFileSync(clockFile, String(midnight + 60_000));
  const k3 = await newContext();
  await visit(k3, '/cookieless/3');
  await visit(k1, '/cookieless/4');
  const cookielessStored = [await stored(k1), await stored(k2), await stored(k3)];
  const cookielessSent = sent.filter((s) => s.page.some((path) => path.startsWith('/cookieless/')));

  const accepted = (await untilAccepted(collector, acceptedBefore + EXPECTED_EVENTS)) - acceptedBefore;
  console.log(
    JSON.stringify({
      port,
      order_id: ORDER_ID,
      consent: { before: beforeConsent, consented, next_page: nextPage, refused, again },
      localstorage: { before: lsBefore, id: lsId, consented: lsConsented, refused: lsRefused },
      cookieless: {
        visits: cookieless,
        stored: cookielessStored,
        requests: cookielessSent.map((s) => ({
          url: s.url,
          anonymous_ids: s.events.map((e) => e.anonymous_id ?? null),
        })),
      },
      requests_from_consent_a: sent.filter((s) => s.page.includes('/consent/a')).length,
      expected_events: EXPECTED_EVENTS,
      accepted_by_collector: accepted,
      page_errors: errors,
    })
  );
} finally {
  await browser.close();
  server.close();
}
