/**
 * `npm run bench -- peers` (issue #7): ours beside its peers in one run, one table.
 *  - in process: our core against a port of the cMCP evaluator (in-process.ts), same decisions;
 *  - on Kafka: `killswitch run` against the same trip rule as a Kafka Streams application
 *    (kafka-peers.ts, kafka-streams/), same broker, same topic.
 * Every ratio is ours / peer from this run. PEERS_SKIP_KAFKA=1 runs the in-process part only.
 */
import { cpus, loadavg } from 'node:os';
import { startBroker } from '../kafka-harness.js';
import { report } from '../util.js';
import { inProcess } from './in-process.js';
import { kafkaPeers, progress, setDifference, type KafkaPeersResult } from './kafka-peers.js';
import { ensureStreamsApp, javaVersion } from './streams-app.js';

const fmt = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : 'n/a');
const ratio = (a: number, b: number): string => fmt(a / b, 2);

function table(rows: readonly (readonly string[])[]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: readonly string[]): string => `| ${r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join(' | ')} |`;
  console.log(line(rows[0]!));
  console.log(`|${widths.map((w, c) => (c === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`);
  for (const r of rows.slice(1)) console.log(line(r));
}

export async function run(): Promise<void> {
  const loads: string[] = [];
  const load = (when: string): void => {
    loads.push(`${when} ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  };
  let maxLoad1 = 0;
  const sampler = setInterval(() => (maxLoad1 = Math.max(maxLoad1, loadavg()[0]!)), 5000);
  sampler.unref();
  load('start');
  const buildSeconds = process.env.PEERS_SKIP_KAFKA === '1' ? 0 : ensureStreamsApp();

  progress('in process: our core and the cMCP port');
  const ip = inProcess();
  load('after in-process');

  let k: KafkaPeersResult | undefined;
  if (process.env.PEERS_SKIP_KAFKA !== '1') {
    progress('starting the broker');
    const broker = await startBroker();
    try {
      k = await kafkaPeers(broker.brokers, broker.own);
    } finally {
      await broker.stop();
    }
    load('end');
  }
  clearInterval(sampler);

  const rows: string[][] = [['figure', 'ours', 'peer', 'ours / peer']];
  rows.push(
    ['in process: decisions/s, median of rounds 7..10 (windows full)', fmt(ip.ours.steady), `${fmt(ip.cmcp.steady)} (cMCP port)`, ratio(ip.ours.steady, ip.cmcp.steady)],
    [`in process: bytes per identity, windows full (~${fmt(ip.callsPerWindow)} calls each)`, fmt(ip.ours.bytesPerIdentity), fmt(ip.cmcp.bytesPerIdentity), ratio(ip.ours.bytesPerIdentity, ip.cmcp.bytesPerIdentity)],
    ['in process: bytes per identity, 1M identities with one call', fmt(ip.oursFreshBytes), fmt(ip.cmcpFreshBytes), ratio(ip.oursFreshBytes, ip.cmcpFreshBytes)],
    ['in process: identities tripped (same decision)', fmt(ip.ours.trips.size), fmt(ip.cmcp.trips.size), ip.tripDifferences === 0 ? 'same' : `${ip.tripDifferences} differ`],
  );
  if (k !== undefined) {
    const best = (runs: KafkaPeersResult['ours']): KafkaPeersResult['ours'][number] => runs.reduce((a, b) => (b.rate > a.rate ? b : a));
    const o = best(k.ours);
    const s = best(k.streams);
    const sameAll = [...k.ours, ...k.streams].map((r) => setDifference(r.tripped, k.expected));
    rows.push(
      ['Kafka: decisions/s, 1 instance / 1 stream thread, best of 2', fmt(o.rate), `${fmt(s.rate)} (Kafka Streams)`, ratio(o.rate, s.rate)],
      ['Kafka: CPU of the processor per decision (µs)', fmt(o.cpuMicros, 2), fmt(s.cpuMicros, 2), ratio(o.cpuMicros, s.cpuMicros)],
      ['Kafka: process start to first committed progress (s)', fmt(o.fromSpawnSeconds, 1), fmt(s.fromSpawnSeconds, 1), ratio(o.fromSpawnSeconds, s.fromSpawnSeconds)],
      [`Kafka: identities tripped (expected ${k.expected.size}, our core in process)`, fmt(o.tripped.size), fmt(s.tripped.size), setDifference(o.tripped, s.tripped)],
      ['Kafka: trip latency p50 at 20k decisions/s (ms)', fmt(k.oursLatency.p50, 1), fmt(k.streamsLatency.p50, 1), ratio(k.oursLatency.p50, k.streamsLatency.p50)],
      ['Kafka: trip latency p99 at 20k decisions/s (ms)', fmt(k.oursLatency.p99, 1), fmt(k.streamsLatency.p99, 1), ratio(k.oursLatency.p99, k.streamsLatency.p99)],
    );
    console.log('');
    table(rows);
    report('details', {
      'machine': `${cpus().length} cores, ${cpus()[0]?.model ?? '?'}; node ${process.version}; ${javaVersion()}`,
      'load average (1, 5, 15 min)': loads.join('; '),
      'highest 1-min load average seen (5 s samples)': maxLoad1.toFixed(2),
      'Kafka Streams peer build (s; 0 = up to date)': buildSeconds.toFixed(1),
      'in process: decisions, identities': `${fmt(ip.decisions)}, ${fmt(ip.identities)}`,
      'in process: ours, decisions/s per round': ip.ours.rates.map((r) => fmt(r)).join(', '),
      'in process: cMCP port, decisions/s per round': ip.cmcp.rates.map((r) => fmt(r)).join(', '),
      'Kafka: broker': k.brokerOwn ? 'started by this run' : 'KAFKA_BROKERS',
      'Kafka: backlog record size (B)': Math.round(k.recordBytes),
      'Kafka: ours, decisions/s per round': k.ours.map((r) => fmt(r.rate)).join(', '),
      'Kafka: Kafka Streams, decisions/s per round': k.streams.map((r) => fmt(r.rate)).join(', '),
      'Kafka: machine cores busy during the best runs (ours, peer)': `${o.machineBusy.toFixed(2)}, ${s.machineBusy.toFixed(2)}`,
      'Kafka: tripped sets against the expected, every run (ours x2, Kafka Streams x2)': sameAll.join('; '),
      'Kafka latency: trips measured, missing (ours; peer)': `${k.oursLatency.trips}, ${k.oursLatency.missing}; ${k.streamsLatency.trips}, ${k.streamsLatency.missing}`,
      'Kafka latency: produced decisions/s (ours; peer)': `${fmt(k.oursLatency.producedRate)}; ${fmt(k.streamsLatency.producedRate)}`,
      'Kafka latency: max (ms) (ours; peer)': `${fmt(k.oursLatency.max, 1)}; ${fmt(k.streamsLatency.max, 1)}`,
      'Kafka latency: cores busy, machine / processor (ours; peer)': `${k.oursLatency.machineBusy.toFixed(2)} / ${k.oursLatency.processorBusy.toFixed(2)}; ${k.streamsLatency.machineBusy.toFixed(2)} / ${k.streamsLatency.processorBusy.toFixed(2)}`,
    });
  } else {
    console.log('');
    table(rows);
    report('details', {
      'load average (1, 5, 15 min)': loads.join('; '),
      'in process: ours, decisions/s per round': ip.ours.rates.map((r) => fmt(r)).join(', '),
      'in process: cMCP port, decisions/s per round': ip.cmcp.rates.map((r) => fmt(r)).join(', '),
    });
  }
}
