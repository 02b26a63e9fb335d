/** `killswitch replay`: decisions in, kill events on stdout, addenda to --addenda OUT; deterministic. */
import { AddendumChains } from '../core/documents.js';
import { Evaluator } from '../core/evaluator.js';
import type { Config } from '../config/config.js';
import { ReplaySink } from '../adapters/file/stdout-sink.js';
import { FilePipeline } from '../pipeline/file-pipeline.js';
import { tripRuleConfig } from '../pipeline/trip-rule-config.js';
import type { Signer } from '../ports/signer.js';
import { startProgress } from './progress.js';

export interface ReplayOptions {
  readonly config: Config;
  readonly inputs: readonly string[];
  readonly addendaFile: string | undefined;
  readonly signer: Signer | undefined;
}

export async function replay(options: ReplayOptions): Promise<number> {
  const evaluator = new Evaluator(tripRuleConfig(options.config));
  const sink = new ReplaySink(options.addendaFile);
  const pipeline = new FilePipeline(evaluator, new AddendumChains(), sink, options.signer, {
    onBadLine: (bad) => process.stderr.write(`${bad.file}:${bad.line}: ${bad.reason}: ${bad.message}\n`),
  });
  const progress = startProgress(process.stderr, () => pipeline.counts);
  try {
    for (const input of options.inputs.length > 0 ? options.inputs : ['-']) await pipeline.processFile(input);
  } finally {
    progress.stop();
    await sink.close();
  }
  return 0;
}
