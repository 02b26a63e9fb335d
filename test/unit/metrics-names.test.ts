import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/adapters/metrics/metrics.js';

describe('metric names', () => {
  it('every series starts with killswitch_ once: process metrics are killswitch_process_*, not killswitch_process_process_*', async () => {
    const names = (await createMetrics().registry.getMetricsAsJSON()).map((m) => m.name);
    expect(names.every((n) => n.startsWith('killswitch_'))).toBe(true);
    expect(names).toContain('killswitch_process_cpu_seconds_total');
    expect(names).toContain('killswitch_nodejs_heap_size_used_bytes');
    expect(names.filter((n) => /process_process|killswitch_.*killswitch_/.test(n))).toEqual([]);
  });
});
