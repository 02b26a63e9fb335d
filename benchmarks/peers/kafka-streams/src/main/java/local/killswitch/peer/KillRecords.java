package local.killswitch.peer;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.Signature;
import java.time.Instant;
import java.util.Base64;

/**
 * The kill record of a trip: the fields of a section 3 kill event that the benchmark reads (agent_id,
 * epoch, evidence.tripping_decision_id, ...), keys in sorted order, signed with Ed25519 over the
 * record without its signature, as `killswitch run` signs its kill events. The key is made at start:
 * the benchmark checks no signature, it only pays for making one, as ours does.
 */
final class KillRecords {
  private static final KeyPair KEY;

  static {
    try {
      KEY = KeyPairGenerator.getInstance("Ed25519").generateKeyPair();
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
  }

  private final Signature signer;

  KillRecords() {
    try {
      signer = Signature.getInstance("Ed25519");
      signer.initSign(KEY.getPrivate());
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
  }

  String block(TripRule rule, Decision d, int epoch, long streamTime, int calls, int denies, int advisory) {
    String unsigned = "{\"action\":\"block\",\"agent_id\":" + quote(d.agentId)
        + ",\"at\":\"" + Instant.ofEpochMilli(d.timeMs) + "\",\"epoch\":" + epoch
        + ",\"evidence\":{\"advisory_denies\":" + advisory + ",\"calls\":" + calls + ",\"denies\":" + denies
        + ",\"deny_rate\":" + ((double) denies / calls) + ",\"tripping_decision_id\":" + quote(d.decisionId)
        + ",\"window_end\":\"" + Instant.ofEpochMilli(streamTime) + "\",\"window_start\":\"" + Instant.ofEpochMilli(streamTime - rule.windowMs())
        + "\"},\"kill_switch\":{\"deny_rate_threshold\":" + rule.threshold() + ",\"enabled\":true,\"min_calls\":" + rule.minCalls()
        + ",\"window_seconds\":" + rule.windowSeconds() + "},\"reason\":\"deny_rate_threshold\",\"trigger\":\"deny_rate\""
        + ",\"type\":\"killswitch-peer.kill/v1\"}";
    try {
      signer.update(unsigned.getBytes(StandardCharsets.UTF_8));
      String sig = Base64.getUrlEncoder().withoutPadding().encodeToString(signer.sign());
      return unsigned.substring(0, unsigned.length() - 1) + ",\"signature\":\"" + sig + "\"}";
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
  }

  /** A JSON string; the IDs here are SPIFFE IDs and decision ids, escaped all the same. */
  private static String quote(String s) {
    StringBuilder b = new StringBuilder(s.length() + 2).append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '"' || c == '\\') b.append('\\').append(c);
      else if (c < 0x20 || c > 0x7e) b.append(String.format("\\u%04x", (int) c));
      else b.append(c);
    }
    return b.append('"').toString();
  }
}
