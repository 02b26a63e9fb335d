/**
 * The one place src loads kafkajs (lint forbids importing its values elsewhere): first it puts the record
 * decoder of ./record-decoder.ts in the place of kafkajs's own, in Node's module cache, where kafkajs's
 * record-batch decoder takes it from when it is loaded (at the process's first fetch). That is done only
 * for kafkajs 2.2.4, whose internals the decoder matches, and only if no fetch loaded the record-batch
 * decoder before this module (a program embedding the processor may have fetched with kafkajs first);
 * otherwise kafkajs decodes as it always has: more CPU per record, the same records. And it gives
 * kafkajs decompressors for the batch codecs it lacks (./compression.ts: Snappy, LZ4, Zstandard).
 */
import { createRequire } from 'node:module';
import type * as KafkaJs from 'kafkajs';
import { installDecompressors } from './compression.js';
import { numericRecordDecoder, type RecordDecoder } from './record-decoder.js';

const require = createRequire(import.meta.url);
const MATCHED_VERSION = '2.2.4';
const RECORD_DECODER = 'kafkajs/src/protocol/recordBatch/record/v0/decoder.js';
const RECORD_BATCH_DECODER = 'kafkajs/src/protocol/recordBatch/v0/decoder.js';

/** How this process's kafkajs decodes fetched records: `numeric` (ours), or kafkajs's own and why. */
export type RecordDecoding = { readonly decoder: 'numeric' } | { readonly decoder: 'kafkajs'; readonly reason: string };

function install(): RecordDecoding {
  const { version } = require('kafkajs/package.json') as { version: string };
  if (version !== MATCHED_VERSION) return { decoder: 'kafkajs', reason: `kafkajs ${version} is not ${MATCHED_VERSION}, the version the numeric record decoder matches` };
  if (require.cache[require.resolve(RECORD_BATCH_DECODER)] !== undefined) {
    return { decoder: 'kafkajs', reason: "kafkajs's record-batch decoder was loaded before src/adapters/kafka/kafkajs.ts" };
  }
  const kafkajsDecoder = require(RECORD_DECODER) as RecordDecoder;
  const cached = require.cache[require.resolve(RECORD_DECODER)];
  if (cached === undefined) return { decoder: 'kafkajs', reason: 'kafkajs record decoder not in the module cache' };
  cached.exports = numericRecordDecoder(kafkajsDecoder);
  return { decoder: 'numeric' };
}

export const recordDecoding: RecordDecoding = install();

const kafkajs = require('kafkajs') as typeof KafkaJs;
installDecompressors(kafkajs.CompressionCodecs);
export default kafkajs;
