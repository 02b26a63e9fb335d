package local.killswitch.peer;

import java.io.IOException;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.Arrays;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;

/**
 * The fields of a policy decision (docs/spec.md section 1) the trip rule needs, read with Jackson's
 * streaming parser. Unknown fields are skipped. `decode` returns null for a record that is not a valid
 * decision (the benchmark's input has none; `killswitch run` sends such records to its DLQ).
 */
final class Decision {
  /** How a decision counts (section 2 defaults): ignored, a call, a deny, an advisory deny. */
  static final int IGNORED = 0;
  static final int CALL = 1;
  static final int DENY = 2;
  static final int ADVISORY_DENY = 3;

  private static final JsonFactory JSON = new JsonFactory();

  final String decisionId;
  /** null: anonymous */
  final String agentId;
  final int cls;
  final long timeMs;

  private Decision(String decisionId, String agentId, int cls, long timeMs) {
    this.decisionId = decisionId;
    this.agentId = agentId;
    this.cls = cls;
    this.timeMs = timeMs;
  }

  static Decision decode(byte[] key, byte[] value) {
    if (value == null) return null;
    String decisionId = null;
    String agentId = null;
    String decision = null;
    String occurredAt = null;
    try (JsonParser p = JSON.createParser(value)) {
      if (p.nextToken() != JsonToken.START_OBJECT) return null;
      for (JsonToken t = p.nextToken(); t == JsonToken.FIELD_NAME; t = p.nextToken()) {
        String name = p.currentName();
        JsonToken v = p.nextToken();
        switch (name) {
          case "decision_id" -> decisionId = v == JsonToken.VALUE_STRING ? p.getText() : null;
          case "agent_id" -> agentId = v == JsonToken.VALUE_STRING ? p.getText() : null;
          case "decision" -> decision = v == JsonToken.VALUE_STRING ? p.getText() : null;
          case "occurred_at" -> occurredAt = v == JsonToken.VALUE_STRING ? p.getText() : null;
          default -> p.skipChildren();
        }
      }
    } catch (IOException e) {
      return null;
    }
    if (decisionId == null || decision == null || occurredAt == null) return null;
    int cls = classOf(decision);
    if (cls < 0) return null;
    long timeMs;
    try {
      timeMs = OffsetDateTime.parse(occurredAt).toInstant().toEpochMilli();
    } catch (DateTimeParseException e) {
      return null;
    }
    if (agentId != null && agentId.isEmpty()) agentId = null;
    // A record whose key is non-empty and differs from agent_id is invalid (section 1).
    if (key != null && key.length > 0 && (agentId == null || !Arrays.equals(key, DenyRateStreams.utf8(agentId)))) return null;
    return new Decision(decisionId, agentId, cls, timeMs);
  }

  private static int classOf(String decision) {
    return switch (decision) {
      case "allow" -> CALL;
      case "deny" -> DENY;
      case "advisory_deny" -> ADVISORY_DENY;
      case "step_up", "defer", "redact", "fault", "n/a" -> IGNORED;
      default -> -1;
    };
  }
}
