package local.killswitch.peer;

/**
 * docs/spec.md section 2: window W with buckets of g ms, min_calls and threshold (both inclusive, plain
 * IEEE division), allowed lateness, and `window_seconds` as recorded in kill records.
 */
record TripRule(long windowMs, long resolutionMs, long latenessMs, int minCalls, double threshold, int windowSeconds) {
  /** The oldest bucket number in the window at time T: floor((T - W) / g). */
  long cutoffBucket(long streamTime) {
    return Math.floorDiv(streamTime - windowMs, resolutionMs);
  }

  long bucketOf(long t) {
    return Math.floorDiv(t, resolutionMs);
  }

  boolean trips(int calls, int denies) {
    return calls >= minCalls && (double) denies / calls >= threshold;
  }
}
