// What the browser tests read from the collector under test: its count of accepted events.

// The collector's count of accepted events (its /metrics); 0 while it does not answer.
export async function acceptedByCollector(collector) {
  const text = await fetch(`${collector}/metrics`).then((r) => r.text(), () => '');
  return text
    .split('\n')
    .filter((l) => l.startsWith('touchstream_producer_events_accepted_total'))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

// Beacons leave from the browser process after the tab is gone: waits (20 s at most) until the
// collector has accepted `total` events, and returns its count.
export async function untilAccepted(collector, total) {
  const until = Date.now() + 20_000;
  let now = await acceptedByCollector(collector);
  while (now < total && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    now = await acceptedByCollector(collector);
  }
  return now;
}
