// The Chromium every browser test drives: Debian's (CHROMIUM_PATH, default /usr/bin/chromium),
// headless, no sandbox or GPU, no background traffic of its own, a fresh profile per launch
// (playwright-core's default).
//
// `hosts` are names mapped to 127.0.0.1 (the test's own pages and fake referrers). With
// `desktopUserAgent`, the browser presents the user agent of the same Chromium with a screen:
// headless Chromium says "HeadlessChrome", which the enricher rightly flags as a bot (bots open
// no touch). It is set for the whole browser, as beacons leave after their page (and a per-page
// override) is gone.

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

// `fail` is the calling script's exit-with-a-message.
export async function launch({ hosts = [], desktopUserAgent = false, fail }) {
  if (!existsSync(executablePath)) fail(`${executablePath} is missing: run deploy/services.sh install-test-tools`);
  const args = [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--disable-quic',
  ];
  let userAgent = null;
  if (desktopUserAgent) {
    const version = execFileSync(executablePath, ['--version'], { encoding: 'utf8' }).match(/[\d.]+/)[0];
    userAgent = `Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${version} Safari/537.36`;
    args.push(`--user-agent=${userAgent}`);
  }
  if (hosts.length) args.push(`--host-resolver-rules=${hosts.map((h) => `MAP ${h} 127.0.0.1`).join(', ')}`);
  const browser = await chromium.launch({ executablePath, headless: true, args });
  return { browser, userAgent };
}
