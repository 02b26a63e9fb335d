/**
 * Topic setup at start: create what is missing with the right settings, refuse (one line) what exists
 * with the wrong ones. The kills topic is the block ledger: compacted. Addenda are append-only (never
 * compacted) and have one partition per decisions partition, so each input partition's hash chain
 * lives in the addenda partition of the same number.
 */
import type { Admin } from 'kafkajs';
import kafkajs from './kafkajs.js';
import { retrying } from './retry.js';
import { KillSwitchError } from '../../core/errors.js';
import { repartitionTopic } from './repartition.js';
import { opaIdsTopic, opaIdsTopicConfig } from './opa-ids.js';

export interface TopicNames {
  readonly decisions: string;
  readonly kills: string;
  readonly addenda: string;
  readonly dlq: string;
  readonly shadow: string;
  readonly operator_addenda: string;
  /** the internal repartition topic (docs/spec.md#11-kafka-mode); absent: `<decisions>.repartition` */
  readonly repartition?: string | undefined;
  /** the internal topic of the OPA decision ids taken (docs/opa.md); absent: `<decisions>.opa-ids` */
  readonly opa_ids?: string | undefined;
}

export interface TopicSettings {
  readonly partitions: number;
  readonly replicationFactor: number;
  /** `opa.dedup_size`: the opa-ids topic, when created, keeps at least that many ids */
  readonly opaDedupSize: number;
}

async function partitionCounts(admin: Admin, names: readonly string[]): Promise<Map<string, number>> {
  const existing = new Set(await retrying(() => admin.listTopics()));
  const present = names.filter((n) => existing.has(n));
  const counts = new Map<string, number>();
  if (present.length === 0) return counts;
  const meta = await retrying(() => admin.fetchTopicMetadata({ topics: present }));
  for (const t of meta.topics) counts.set(t.name, t.partitions.length);
  return counts;
}

async function cleanupPolicy(admin: Admin, topic: string): Promise<string> {
  const r = await retrying(() => admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['cleanup.policy'] }],
  }));
  return r.resources[0]?.configEntries.find((e) => e.configName === 'cleanup.policy')?.configValue ?? 'delete';
}

const { ConfigResourceTypes } = kafkajs;

function misconfigured(message: string): KillSwitchError {
  return new KillSwitchError('CONFIG_INVALID', message);
}

/** Returns the number of decisions partitions. */
export async function ensureTopics(admin: Admin, topics: TopicNames, settings: TopicSettings): Promise<number> {
  const repartition = repartitionTopic(topics);
  const opaIds = opaIdsTopic(topics);
  const names = [topics.decisions, topics.kills, topics.addenda, topics.dlq, topics.shadow, topics.operator_addenda, repartition, opaIds];
  const counts = await partitionCounts(admin, names);
  const decisionsPartitions = counts.get(topics.decisions) ?? settings.partitions;
  const create: { topic: string; numPartitions: number; replicationFactor: number; configEntries: { name: string; value: string }[] }[] = [];
  const want = (topic: string, numPartitions: number, config: Record<string, string>): void => {
    if (!counts.has(topic)) {
      create.push({ topic, numPartitions, replicationFactor: settings.replicationFactor, configEntries: Object.entries(config).map(([name, value]) => ({ name, value })) });
    }
  };
  want(topics.decisions, decisionsPartitions, {});
  want(topics.kills, 1, { 'cleanup.policy': 'compact', 'min.compaction.lag.ms': '0' });
  want(topics.addenda, decisionsPartitions, { 'cleanup.policy': 'delete', 'retention.ms': '-1', 'retention.bytes': '-1' });
  want(topics.dlq, decisionsPartitions, { 'cleanup.policy': 'delete' });
  want(topics.shadow, decisionsPartitions, { 'cleanup.policy': 'delete' });
  // one partition: the operator chain is one hash chain, written by one instance at a time (fenced)
  want(topics.operator_addenda, 1, { 'cleanup.policy': 'delete', 'retention.ms': '-1', 'retention.bytes': '-1' });
  // Decisions read on a partition other than their identity's owner, forwarded there (never compacted:
  // a compaction would keep one decision per identity)
  want(repartition, decisionsPartitions, { 'cleanup.policy': 'delete' });
  // The OPA decision ids the instances took (one partition, bounded in bytes: read whole at start)
  want(opaIds, 1, opaIdsTopicConfig(settings.opaDedupSize));
  if (create.length > 0) {
    try {
      await admin.createTopics({ topics: create, waitForLeaders: true });
    } catch (err) {
      // Another instance may have created them a moment ago: only a real mismatch below is an error.
      if ((err as { type?: string }).type !== 'TOPIC_ALREADY_EXISTS') throw err;
    }
  }
  const addendaPartitions = counts.get(topics.addenda);
  if (addendaPartitions !== undefined && addendaPartitions !== decisionsPartitions) {
    throw misconfigured(`kafka topic ${topics.addenda} has ${addendaPartitions} partitions but ${topics.decisions} has ${decisionsPartitions}: ` +
      'each decisions partition needs its addenda partition (one hash chain per input partition)');
  }
  const repartitionPartitions = counts.get(repartition);
  if (repartitionPartitions !== undefined && repartitionPartitions !== decisionsPartitions) {
    throw misconfigured(`kafka topic ${repartition} has ${repartitionPartitions} partitions but ${topics.decisions} has ${decisionsPartitions}: ` +
      'repartition partition p holds the decisions forwarded to the owner of decisions partition p');
  }
  if (counts.has(repartition)) {
    const policy = await cleanupPolicy(admin, repartition);
    if (policy.split(',').includes('compact')) {
      throw misconfigured(`kafka topic ${repartition} has cleanup.policy=${policy}; it holds forwarded decisions and must never be compacted`);
    }
  }
  if (counts.has(topics.kills)) {
    const policy = await cleanupPolicy(admin, topics.kills);
    if (!policy.split(',').includes('compact')) {
      throw misconfigured(`kafka topic ${topics.kills} has cleanup.policy=${policy}; the block ledger must be compacted (cleanup.policy=compact), or old blocks are deleted`);
    }
  }
  const operatorPartitions = counts.get(topics.operator_addenda);
  if (operatorPartitions !== undefined && operatorPartitions !== 1) {
    throw misconfigured(`kafka topic ${topics.operator_addenda} has ${operatorPartitions} partitions; it must have 1 (the operator actions form one hash chain)`);
  }
  if (counts.has(opaIds)) {
    const policy = await cleanupPolicy(admin, opaIds);
    if (policy.split(',').includes('compact')) {
      throw misconfigured(`kafka topic ${opaIds} has cleanup.policy=${policy}; its records have no key and a compacted topic refuses them (use cleanup.policy=delete)`);
    }
  }
  for (const t of [topics.addenda, topics.operator_addenda]) {
    if (!counts.has(t)) continue;
    const policy = await cleanupPolicy(admin, t);
    if (policy.split(',').includes('compact')) {
      throw misconfigured(`kafka topic ${t} has cleanup.policy=${policy}; addenda are append-only and must never be compacted`);
    }
  }
  return decisionsPartitions;
}
