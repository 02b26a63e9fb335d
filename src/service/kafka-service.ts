/**
 * The operator API's service in Kafka mode. Reads come from the processor of this instance (the block
 * ledger, which every instance reads whole, and the windows of the partitions it owns). Operator
 * blocks and unblocks are written to the kills topic with their addendum on the operator addenda
 * topic, in one transaction of a producer whose transactional id is the same on every instance: an
 * instance that writes fences the others, so the operator chain has one writer at a time and an
 * instance that was fenced re-reads the ledger and the chain tip before it writes again. Posted
 * decisions are produced to the decisions topic (keyed by agent_id), all of a request in one
 * transaction, and evaluated there like any other.
 */
import { randomUUID } from 'node:crypto';
import type { Kafka, Message, Producer } from 'kafkajs';
import { canonicalJson } from '../core/canonical-json.js';
import { AddendumChains, type KillEvent, type KillSwitchSettings, type TraceAddendum } from '../core/documents.js';
import { KillSwitchError } from '../core/errors.js';
import { ledgerKey } from '../core/ledger-fold.js';
import { operatorDocuments } from '../pipeline/trip-documents.js';
import type { Logger } from '../ports/logger.js';
import type { Signer } from '../ports/signer.js';
import type { BlocksPage } from '../core/ledger-feed.js';
import { Mutex } from '../core/mutex.js';
import type { IdentityView, IngestOptions, IngestRecord, IngestResult, OperatorAction, OperatorService } from '../ports/operator-service.js';
import { identityView } from './operator-service.js';
import { LINE_NOT_UTF8, type DecisionDecoder } from '../adapters/serde/decision-decoder.js';
import { readTail } from '../adapters/kafka/partition-reader.js';
import { DLQ_HEADERS, deadLetterRecord } from '../adapters/kafka/dlq.js';
import { opaIdsMessages, opaIdsTopic } from '../adapters/kafka/opa-ids.js';
import { bySize, connectFenced, isFenced } from '../adapters/kafka/transactional-committer.js';
import type { KafkaProcessor } from './kafka-processor.js';
import type { TopicNames } from '../adapters/kafka/topics.js';

const MAX_REPORTED_ERRORS = 100;
/** how often an operator write is tried (another instance fencing this one in between, a broker error) */
const WRITE_ATTEMPTS = 10;

export interface KafkaServiceOptions {
  readonly kafka: Kafka;
  readonly groupId: string;
  readonly topics: TopicNames;
  readonly transactionTimeoutMs: number;
  readonly processor: KafkaProcessor;
  readonly decoder: DecisionDecoder;
  readonly settings: KillSwitchSettings;
  readonly signer: Signer | undefined;
  readonly log: Logger;
  /** a posted record kept in the DLQ (once its transaction committed): killswitch_dlq_total{reason} */
  readonly countDeadLetter?: (reason: string) => void;
  readonly now?: () => number;
}

export class KafkaService implements OperatorService {
  private readonly operatorMutex = new Mutex();
  private readonly ingestMutex = new Mutex();
  private operatorProducer: Producer | undefined;
  private ingestProducer: Producer | undefined;
  private chains = new AddendumChains();
  private readonly now: () => number;

  constructor(private readonly o: KafkaServiceOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Posted decisions to the decisions topic in one transaction; invalid ones to the DLQ with their reason (in the same one). */
  ingest(records: readonly IngestRecord[], options: IngestOptions = {}): Promise<IngestResult> {
    const { topics } = this.o;
    const decisions: Message[] = [];
    const dlq: Message[] = [];
    const errors: { index: number; reason: string; message: string }[] = [];
    const reasons: string[] = [];
    records.forEach((r, i) => {
      // a posted NDJSON line or a mapped OPA event comes with its parsed value (IngestRecord.value): not parsed again
      const d = r.raw !== undefined ? LINE_NOT_UTF8 : r.value === undefined ? this.o.decoder.decodeText(r.text) : this.o.decoder.decodeValue(r.value);
      if (d.ok) {
        decisions.push({ key: d.decision.agentId, value: r.text });
        return;
      }
      if (errors.length < MAX_REPORTED_ERRORS) errors.push({ index: i, reason: d.reason, message: d.message });
      reasons.push(d.reason);
      dlq.push(deadLetterRecord(null, r.raw ?? r.text, undefined, {
        [DLQ_HEADERS.reason]: d.reason, [DLQ_HEADERS.message]: d.message.slice(0, 1000), [DLQ_HEADERS.topic]: 'http:/v1/decisions', [DLQ_HEADERS.offset]: String(i),
      }));
    });
    return this.ingestMutex.run(async () => {
      try {
        this.ingestProducer ??= await this.connect(`${this.o.groupId}.ingest.${randomUUID()}`);
        const trx = await this.ingestProducer.transaction();
        try {
          // an OPA batch's ids: every instance reads them, so a retry of the batch is not taken twice (docs/opa.md)
          const opaIds = options.opaIds ?? [];
          for (const part of bySize(opaIdsMessages(opaIds), 512 * 1024)) await trx.send({ topic: opaIdsTopic(topics), messages: part });
          // a body may hold up to http.max_body_bytes of one identity's decisions: sent in parts, one transaction
          for (const part of bySize(decisions, 512 * 1024)) await trx.send({ topic: topics.decisions, messages: part });
          for (const part of bySize(dlq, 512 * 1024)) await trx.send({ topic: topics.dlq, messages: part });
          await trx.commit();
        } catch (err) {
          await trx.abort().catch(() => undefined);
          throw err;
        }
      } catch (err) {
        await this.ingestProducer?.disconnect().catch(() => undefined);
        this.ingestProducer = undefined;
        this.o.log.error({ err: (err as Error).message }, 'ingest: producing to the decisions topic failed');
        throw new KillSwitchError('INGEST_UNAVAILABLE', `the decisions could not be produced to ${topics.decisions}; none were, send them again`, { cause: err });
      }
      for (const reason of reasons) this.o.countDeadLetter?.(reason);
      return { accepted: decisions.length, invalid: dlq.length, trips: null, errors };
    });
  }

  block(a: OperatorAction): Promise<KillEvent> {
    return this.operatorAction('block', a);
  }

  unblock(a: OperatorAction): Promise<KillEvent> {
    return this.operatorAction('unblock', a);
  }

  private operatorAction(action: 'block' | 'unblock', a: OperatorAction): Promise<KillEvent> {
    const { processor, topics, log } = this.o;
    const key = ledgerKey({ agent_id: a.agentId, ...(a.scope === undefined ? {} : { scope: a.scope }) });
    return this.operatorMutex.run(async () => {
      /** the event of a failed attempt: its commit may have landed although the answer was an error */
      let tried: KillEvent | undefined;
      for (let attempt = 1; ; attempt++) {
        let producer: Producer;
        try {
          producer = await this.operatorWriter();
          // Our producer fenced every other writer when it was initialised: what they committed is on
          // the topic now, and they can commit nothing more without fencing us (then we retry).
          await processor.catchUpLedger();
        } catch (err) {
          log.error({ action, agent_id: key, err: (err as Error).message }, `operator ${action}: the ledger cannot be reached`);
          const outcome = tried === undefined ? 'nothing was changed, try again' : 'an earlier attempt may have landed: check GET /v1/identities before trying again';
          throw new KillSwitchError('LEDGER_WRITE_FAILED', `the ${action} could not be written to ${topics.kills}: ${(err as Error).message}; ${outcome}`, { cause: err });
        }
        if (tried !== undefined && processor.feed.latestOf(key)?.event_id === tried.event_id) {
          log.info({ action, agent_id: a.agentId, scope: a.scope, epoch: tried.epoch, authorized_by: a.authorizedBy, reason: a.reason, event_id: tried.event_id },
            `operator ${action} (its commit had answered an error, but it is on the ledger)`);
          return tried;
        }
        const state = processor.fold.get(key);
        let epoch: number;
        if (action === 'block') {
          if (state?.blocked === true) throw new KillSwitchError('ALREADY_BLOCKED', `${key} is already blocked (epoch ${state.epoch})`);
          epoch = processor.fold.nextEpoch(key);
        } else {
          if (state?.blocked !== true) throw new KillSwitchError('NOT_BLOCKED', `${key} is not blocked`);
          epoch = state.epoch;
        }
        const { killEvent, addendum } = operatorDocuments({
          action, agentId: a.agentId, ...(a.scope === undefined ? {} : { scope: a.scope }), epoch, atMs: this.now(), reason: a.reason,
          authorizedBy: a.authorizedBy, settings: this.o.settings,
        }, this.chains, this.o.signer);
        try {
          const trx = await producer.transaction();
          try {
            await trx.sendBatch({ topicMessages: [
              { topic: topics.kills, messages: [{ key, value: canonicalJson(killEvent) }] },
              { topic: topics.operator_addenda, messages: [{ key, value: canonicalJson(addendum), partition: 0 }] },
            ] });
            await trx.commit();
          } catch (err) {
            await trx.abort().catch(() => undefined);
            throw err;
          }
        } catch (err) {
          await this.dropOperatorWriter();
          // Fenced by another instance writing at the same moment, or an error whose outcome is unknown:
          // start again from a fresh producer and the ledger as it is now (which shows whether it landed).
          if (attempt < WRITE_ATTEMPTS) {
            log.info({ action, agent_id: key, attempt, fenced: isFenced(err), err: (err as Error).message }, 'operator write failed; reading the ledger again and retrying');
            tried = killEvent;
            // two instances writing at once fence each other in turn: a random pause lets one finish
            await new Promise((r) => setTimeout(r, Math.random() * 100 * attempt));
            continue;
          }
          log.error({ action, agent_id: key, err: (err as Error).message }, `operator ${action} could not be written to the ledger`);
          throw new KillSwitchError('LEDGER_WRITE_FAILED',
            `the ${action} could not be written to ${topics.kills} in ${WRITE_ATTEMPTS} attempts (${(err as Error).message}); the last may have landed: check GET /v1/identities before trying again`, { cause: err });
        }
        this.chains.append(addendum);
        // answer once this instance's view (and the owner's window, if it is here) shows the change;
        // it is committed either way, so a slow ledger read only delays this instance's view
        await processor.catchUpLedger().catch((err: unknown) => {
          log.warn({ action, agent_id: key, err: (err as Error).message }, `operator ${action} committed; this instance's ledger view has not caught up yet`);
        });
        log.info({ action, agent_id: a.agentId, scope: a.scope, epoch, authorized_by: a.authorizedBy, reason: a.reason, event_id: killEvent.event_id }, `operator ${action}`);
        return killEvent;
      }
    });
  }

  /** The operator chain's writer: connecting it fences the other instances' writers; then the chain tip is read. */
  private async operatorWriter(): Promise<Producer> {
    if (this.operatorProducer !== undefined) return this.operatorProducer;
    const producer = await this.connect(`${this.o.groupId}.operator`, { fence: true });
    try {
      let tip: TraceAddendum | undefined;
      await readTail(this.o.kafka, this.o.topics.operator_addenda, [0], `${this.o.groupId}.operator-tip`, (_p, m) => {
        if (m.value !== null) tip = JSON.parse(m.value.toString('utf8')) as TraceAddendum;
      });
      this.chains = new AddendumChains();
      if (tip !== undefined) this.chains.restoreTip(tip);
    } catch (err) {
      await producer.disconnect().catch(() => undefined);
      throw err;
    }
    this.operatorProducer = producer;
    return producer;
  }

  private async dropOperatorWriter(): Promise<void> {
    const p = this.operatorProducer;
    this.operatorProducer = undefined;
    await p?.disconnect().catch(() => undefined);
  }

  /** A transactional producer; with `fence`, registered with the coordinator now, fencing every older producer of the id. */
  private async connect(transactionalId: string, { fence = false } = {}): Promise<Producer> {
    const producer = this.o.kafka.producer({
      transactionalId, idempotent: true, maxInFlightRequests: 1, transactionTimeout: this.o.transactionTimeoutMs, allowAutoTopicCreation: false,
    });
    if (fence) await connectFenced(producer);
    else await producer.connect();
    return producer;
  }

  isBlocked(key: string): boolean {
    return this.o.processor.fold.isBlocked(key);
  }

  identity(agentId: string): IdentityView {
    const { processor } = this.o;
    const w = processor.identityWindow(agentId);
    return { ...identityView(agentId, processor.fold, processor.feed, w.window), partition: { number: w.partition, owned: w.owned } };
  }

  blocks(limit: number, after: string | undefined): BlocksPage {
    return this.o.processor.feed.blocksPage(this.o.processor.fold, limit, after);
  }

  async close(): Promise<void> {
    await Promise.all([
      this.operatorMutex.run(() => this.dropOperatorWriter()),
      this.ingestMutex.run(async () => {
        await this.ingestProducer?.disconnect().catch(() => undefined);
        this.ingestProducer = undefined;
      }),
    ]);
  }
}
