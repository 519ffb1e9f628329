/**
 * Partner access-control building blocks: CIDR source lists (src/shared/cidr.ts) and the
 * per-worker token bucket of a partner's rateLimit (src/worker/partners/token-bucket.ts).
 * Property tests compare CidrSet with a plain mask comparison written here, independent of
 * the module's own parsing, and run many buckets side by side as the workers would.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { canonicalAddress, CidrSet, parseCidr } from '../../src/shared/cidr.js';
import { TokenBucket } from '../../src/worker/partners/token-bucket.js';

const V4_ALL = 0xffffffffn;
const V6_ALL = (1n << 128n) - 1n;

function v4Text(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
}

/** Eight 4-digit groups, the uncompressed form. */
function v6Full(value: bigint): string {
  const hex = value.toString(16).padStart(32, '0');
  return Array.from({ length: 8 }, (_, i) => hex.slice(i * 4, i * 4 + 4)).join(':');
}

/** The compressed form, from the WHATWG URL parser rather than from the module under test. */
function v6Compressed(value: bigint): string {
  return new URL(`http://[${v6Full(value)}]/`).hostname.slice(1, -1);
}

function mask(bits: number, prefix: number): bigint {
  const all = (1n << BigInt(bits)) - 1n;
  return all ^ ((1n << BigInt(bits - prefix)) - 1n);
}

describe('parseCidr', { timeout: 10_000 }, () => {
  it('parses IPv4, IPv6 and bare addresses', () => {
    assert.deepEqual(parseCidr('203.0.113.0/24'), {
      family: 4,
      network: 0xcb007100n,
      prefix: 24,
    });
    assert.deepEqual(parseCidr('2001:db8::/32'), {
      family: 6,
      network: 0x20010db8n << 96n,
      prefix: 32,
    });
    assert.deepEqual(parseCidr('198.51.100.7'), { family: 4, network: 0xc6336407n, prefix: 32 });
    assert.deepEqual(parseCidr('::1'), { family: 6, network: 1n, prefix: 128 });
    assert.deepEqual(parseCidr('0.0.0.0/0'), { family: 4, network: 0n, prefix: 0 });
    assert.deepEqual(parseCidr('::/0'), { family: 6, network: 0n, prefix: 0 });
  });

  it('refuses a bad address, naming it', () => {
    for (const [text, bad] of [
      ['203.0.113/24', '203.0.113'],
      ['256.0.0.0/8', '256.0.0.0'],
      ['010.0.0.0/8', '010.0.0.0'],
      ['2001:db8:::/32', '2001:db8:::'],
      ['fe80::%eth0/64', 'fe80::%eth0'],
      [' 10.0.0.0/8', ' 10.0.0.0'],
      ['/8', ''],
      ['', ''],
      ['partner.example', 'partner.example'],
    ] as const) {
      assert.throws(
        () => parseCidr(text),
        { message: `${text}: "${bad}" is not an IPv4 or IPv6 address` },
        text,
      );
    }
  });

  it('refuses a prefix that is not a whole number', () => {
    for (const [text, prefix] of [
      ['10.0.0.0/', ''],
      ['10.0.0.0/ 8', ' 8'],
      ['10.0.0.0/08', '08'],
      ['10.0.0.0/0x8', '0x8'],
      ['10.0.0.0/-1', '-1'],
      ['10.0.0.0/8/8', '8/8'],
      ['::/1e2', '1e2'],
    ] as const) {
      assert.throws(
        () => parseCidr(text),
        { message: `${text}: prefix "${prefix}" is not a whole number` },
        text,
      );
    }
  });

  it('refuses a prefix out of range for the family', () => {
    assert.throws(() => parseCidr('10.0.0.0/33'), {
      message: '10.0.0.0/33: prefix /33 is out of range for IPv4 (0 to 32)',
    });
    assert.throws(() => parseCidr('2001:db8::/129'), {
      message: '2001:db8::/129: prefix /129 is out of range for IPv6 (0 to 128)',
    });
    assert.throws(() => parseCidr('::/99999999999999999999'), /out of range for IPv6/);
  });

  it('refuses host bits beyond the prefix, naming the network meant', () => {
    assert.throws(() => parseCidr('203.0.113.5/24'), {
      message: '203.0.113.5/24 has host bits set; did you mean 203.0.113.0/24?',
    });
    assert.throws(() => parseCidr('10.0.0.1/0'), {
      message: '10.0.0.1/0 has host bits set; did you mean 0.0.0.0/0?',
    });
    assert.throws(() => parseCidr('2001:db8::1/32'), {
      message: '2001:db8::1/32 has host bits set; did you mean 2001:db8::/32?',
    });
    assert.throws(() => parseCidr('2001:DB8:0:0:1:0:0:1/64'), {
      message: '2001:DB8:0:0:1:0:0:1/64 has host bits set; did you mean 2001:db8::/64?',
    });
    // RFC 5952: the longest zero run becomes "::", a single zero group stays "0".
    assert.throws(() => parseCidr('1:0:0:2:0:0:0:3/112'), {
      message: '1:0:0:2:0:0:0:3/112 has host bits set; did you mean 1:0:0:2::/112?',
    });
    assert.throws(() => parseCidr('1:0:2:3:4:5:6:7/112'), {
      message: '1:0:2:3:4:5:6:7/112 has host bits set; did you mean 1:0:2:3:4:5:6:0/112?',
    });
    // Of two equally long zero runs, the first one is compressed.
    assert.throws(() => parseCidr('1:0:0:2:0:0:3:5/127'), {
      message: '1:0:0:2:0:0:3:5/127 has host bits set; did you mean 1::2:0:0:3:4/127?',
    });
    assert.throws(() => parseCidr('1:0:2:3:4:5:6:7/96'), {
      message: '1:0:2:3:4:5:6:7/96 has host bits set; did you mean 1:0:2:3:4:5::/96?',
    });
  });

  it('refuses an IPv4-mapped network, which no client would match', () => {
    assert.throws(() => parseCidr('::ffff:203.0.113.0/120'), {
      message:
        '::ffff:203.0.113.0/120 is an IPv4-mapped network, which matches no client; write 203.0.113.0/24',
    });
  });
});

describe('CidrSet', { timeout: 10_000 }, () => {
  it('matches IPv4 at the prefix boundaries', () => {
    const cases: [string, string[], string[]][] = [
      ['0.0.0.0/0', ['0.0.0.0', '255.255.255.255', '10.1.2.3'], ['::1', '2001:db8::1']],
      ['128.0.0.0/1', ['128.0.0.0', '255.255.255.255'], ['127.255.255.255', '0.0.0.0']],
      ['0.0.0.0/1', ['0.0.0.0', '127.255.255.255'], ['128.0.0.0']],
      ['192.0.2.4/31', ['192.0.2.4', '192.0.2.5'], ['192.0.2.3', '192.0.2.6']],
      ['192.0.2.4/32', ['192.0.2.4'], ['192.0.2.5', '192.0.2.3']],
      ['192.0.2.4', ['192.0.2.4'], ['192.0.2.5']],
      ['203.0.113.0/24', ['203.0.113.0', '203.0.113.255'], ['203.0.112.255', '203.0.114.0']],
    ];
    for (const [cidr, inside, outside] of cases) {
      const set = new CidrSet([cidr]);
      for (const address of inside) assert.equal(set.has(address), true, `${cidr} ∋ ${address}`);
      for (const address of outside) assert.equal(set.has(address), false, `${cidr} ∌ ${address}`);
    }
  });

  it('matches IPv6 at the prefix boundaries, compressed or not', () => {
    const cases: [string, string[], string[]][] = [
      ['::/0', ['::', '::1', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'], ['1.2.3.4']],
      ['8000::/1', ['8000::', 'ffff::1'], ['7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', '::']],
      [
        '2001:db8:0:1::/64',
        ['2001:db8:0:1::', '2001:0db8:0000:0001:ffff:ffff:ffff:ffff', '2001:DB8:0:1:0:0:0:5'],
        ['2001:db8:0:2::', '2001:db8::ffff:ffff:ffff:ffff'],
      ],
      ['2001:db8::/127', ['2001:db8::', '2001:db8::1', '2001:0db8:0:0:0:0:0:1'], ['2001:db8::2']],
      ['2001:db8::1/128', ['2001:db8::1', '2001:db8:0:0:0:0:0:1'], ['2001:db8::', '2001:db8::2']],
      ['2001:db8::1', ['2001:0db8:0000:0000:0000:0000:0000:0001'], ['2001:db8::3']],
      ['::1', ['::1', '0:0:0:0:0:0:0:1'], ['127.0.0.1', '::ffff:127.0.0.1']],
    ];
    for (const [cidr, inside, outside] of cases) {
      const set = new CidrSet([cidr]);
      for (const address of inside) assert.equal(set.has(address), true, `${cidr} ∋ ${address}`);
      for (const address of outside) assert.equal(set.has(address), false, `${cidr} ∌ ${address}`);
    }
  });

  it('matches IPv4-mapped IPv6 clients against IPv4 networks only', () => {
    const v4 = new CidrSet(['203.0.113.0/24']);
    for (const mapped of [
      '::ffff:203.0.113.9',
      '::FFFF:203.0.113.9',
      '::ffff:cb00:7109',
      '0000:0000:0000:0000:0000:ffff:cb00:7109',
      '0:0:0:0:0:ffff:203.0.113.9',
    ]) {
      assert.equal(v4.has(mapped), true, mapped);
    }
    assert.equal(v4.has('::ffff:203.0.114.9'), false);
    // Not mapped: IPv4-compatible (deprecated) and NAT64 forms are IPv6 addresses.
    assert.equal(v4.has('::203.0.113.9'), false);
    assert.equal(v4.has('64:ff9b::203.0.113.9'), false);
    assert.equal(v4.has('::fffe:cb00:7109'), false);

    const v6 = new CidrSet(['::/0']);
    assert.equal(v6.has('::ffff:203.0.113.9'), false);
    assert.equal(v6.has('203.0.113.9'), false);
    assert.equal(v6.has('::203.0.113.9'), true);
  });

  it('matches any of several networks of both families', () => {
    const set = new CidrSet(['203.0.113.0/24', '2001:db8::/32', '198.51.100.7']);
    assert.equal(set.has('203.0.113.1'), true);
    assert.equal(set.has('2001:db8:ffff::1'), true);
    assert.equal(set.has('198.51.100.7'), true);
    assert.equal(set.has('198.51.100.8'), false);
    assert.equal(set.has('2001:db9::1'), false);
    assert.equal(new CidrSet([]).has('203.0.113.1'), false);
  });

  it('never matches an address it cannot parse', () => {
    const set = new CidrSet(['0.0.0.0/0', '::/0']);
    for (const garbage of [
      '',
      ' ',
      'localhost',
      '1.2.3',
      '1.2.3.4.5',
      '01.2.3.4',
      '256.1.1.1',
      ' 1.2.3.4',
      '1.2.3.4 ',
      '1.2.3.4/32',
      '[::1]',
      '::1%lo',
      'fe80::1%eth0',
      ':::',
      '1::2::3',
      '12345::',
      'g::',
      '::ffff:1.2.3',
      '::ffff:01.2.3.4',
      '1:2:3:4:5:6:7:8:9',
    ]) {
      assert.equal(set.has(garbage), false, JSON.stringify(garbage));
    }
  });

  it('refuses to build from a bad entry, with parseCidr’s message', () => {
    assert.throws(() => new CidrSet(['10.0.0.0/8', '10.0.0.1/8']), {
      message: '10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?',
    });
  });

  it('agrees with a mask comparison for IPv4 (property)', () => {
    const v4 = fc.bigInt(0n, V4_ALL);
    fc.assert(
      fc.property(
        v4,
        fc.integer({ min: 0, max: 32 }),
        v4,
        fc.boolean(),
        (base, prefix, other, near) => {
          const m = mask(32, prefix);
          const network = base & m;
          // Half the clients share the network's prefix, so matches are as common as misses.
          const client = near ? network | (other & ~m & V4_ALL) : other;
          const expected = (client & m) === network;
          const set = new CidrSet([`${v4Text(network)}/${prefix}`]);
          assert.equal(set.has(v4Text(client)), expected);
          assert.equal(set.has(`::ffff:${v4Text(client)}`), expected);
          assert.equal(set.has(v6Full((0xffffn << 32n) | client)), expected);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('agrees with a mask comparison for IPv6 (property)', () => {
    const v6 = fc.bigInt(0n, V6_ALL);
    fc.assert(
      fc.property(
        v6,
        fc.integer({ min: 0, max: 128 }),
        v6,
        fc.boolean(),
        (base, prefix, other, near) => {
          const m = mask(128, prefix);
          let network = base & m;
          // Mapped networks are refused by design (covered above); move them off the range.
          if (prefix >= 96 && network >> 32n === 0xffffn) network ^= 1n << 127n;
          const client = near ? network | (other & ~m & V6_ALL) : other;
          const mapped = client >> 32n === 0xffffn;
          const expected = !mapped && (client & m) === network;
          const set = new CidrSet([`${v6Compressed(network)}/${prefix}`]);
          assert.equal(set.has(v6Full(client)), expected, v6Full(client));
          assert.equal(set.has(v6Compressed(client)), expected, v6Compressed(client));
          assert.equal(new CidrSet([`${v6Full(network)}/${prefix}`]).has(v6Full(client)), expected);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('TokenBucket', { timeout: 10_000 }, () => {
  it('allows the burst at once, then refuses', () => {
    const bucket = new TokenBucket({ perSecond: 2, burst: 3 }, 1);
    assert.deepEqual(
      [1, 2, 3].map(() => bucket.take(1000)),
      [{ ok: true }, { ok: true }, { ok: true }],
    );
    assert.deepEqual(bucket.take(1000), { ok: false, retryAfterSeconds: 1 });
  });

  it('refills at perSecond, never above the burst', () => {
    const bucket = new TokenBucket({ perSecond: 10, burst: 5 }, 1);
    for (let i = 0; i < 5; i++) assert.equal(bucket.take(0).ok, true);
    assert.equal(bucket.take(0).ok, false);
    assert.equal(bucket.take(99).ok, false); // one token takes 100 ms
    assert.equal(bucket.take(100).ok, true);
    assert.equal(bucket.take(100).ok, false);
    // One second refills 10 tokens' worth, but the bucket holds 5.
    let granted = 0;
    while (bucket.take(1100).ok) granted++;
    assert.equal(granted, 5);
    // Over 10 s the rate holds: 100 tokens, requested every millisecond.
    granted = 0;
    for (let t = 1101; t <= 11_100; t++) if (bucket.take(t).ok) granted++;
    assert.equal(granted, 100);
  });

  it('counts fractions of a millisecond once the clock passes them', () => {
    const bucket = new TokenBucket({ perSecond: 1000, burst: 1 }, 1);
    assert.equal(bucket.take(0.4).ok, true);
    assert.equal(bucket.take(0.9).ok, false);
    assert.equal(bucket.take(1.2).ok, true);
  });

  it('says in whole seconds, at least 1, when a token will be there', () => {
    const slow = new TokenBucket({ perSecond: 1, burst: 1 }, 4); // 1 token per 4 s here
    assert.equal(slow.take(0).ok, true);
    assert.deepEqual(slow.take(0), { ok: false, retryAfterSeconds: 4 });
    assert.deepEqual(slow.take(1), { ok: false, retryAfterSeconds: 4 }); // 3999 ms rounds up
    assert.deepEqual(slow.take(3000), { ok: false, retryAfterSeconds: 1 });
    assert.deepEqual(slow.take(3999), { ok: false, retryAfterSeconds: 1 });
    assert.equal(slow.take(4000).ok, true);

    const fast = new TokenBucket({ perSecond: 1000, burst: 1 }, 1);
    assert.equal(fast.take(0).ok, true);
    assert.deepEqual(fast.take(0), { ok: false, retryAfterSeconds: 1 }); // 1 ms still says 1

    // A client that waits exactly retryAfterSeconds finds a token.
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 0, max: 10_000 }),
        (perSecond, workers, startMs) => {
          const bucket = new TokenBucket({ perSecond, burst: 1 }, workers);
          assert.equal(bucket.take(startMs).ok, true);
          const refused = bucket.take(startMs);
          assert.equal(refused.ok, false);
          if (refused.ok) return;
          assert.ok(refused.retryAfterSeconds >= 1 && Number.isInteger(refused.retryAfterSeconds));
          const afterMs = startMs + refused.retryAfterSeconds * 1000;
          // ... and not a whole second later than needed.
          if (refused.retryAfterSeconds > 1) {
            const probe = new TokenBucket({ perSecond, burst: 1 }, workers);
            assert.equal(probe.take(startMs).ok, true);
            assert.equal(probe.take(afterMs - 1000).ok, false);
          }
          assert.equal(bucket.take(afterMs).ok, true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('gives each of 1, 2 or 3 workers its share', () => {
    const shares = [1, 2, 3].map((workers) => {
      const bucket = new TokenBucket({ perSecond: 200, burst: 400 }, workers);
      return [bucket.perSecond, bucket.burst];
    });
    assert.deepEqual(shares, [
      [200, 400],
      [100, 200],
      [200 / 3, 133],
    ]);
    // A burst smaller than the worker count still leaves every worker one token.
    assert.equal(new TokenBucket({ perSecond: 1, burst: 2 }, 3).burst, 1);
  });

  it('never grants more over all workers than the configured rate and burst (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 20_000 }),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 0, max: 5_000 }),
        (perSecond, burst, workers, durationMs) => {
          const buckets = Array.from(
            { length: workers },
            () => new TokenBucket({ perSecond, burst }, workers),
          );
          const burstTotal = buckets.reduce((sum, bucket) => sum + bucket.burst, 0);
          // The one documented exception: every worker holds at least 1 token.
          assert.ok(burstTotal <= Math.max(burst, workers));
          if (burst >= workers) assert.ok(burstTotal > burst - workers);
          assert.ok(buckets.every((bucket) => bucket.burst >= 1));
          assert.ok(
            buckets.reduce((sum, bucket) => sum + bucket.perSecond, 0) <= perSecond * (1 + 1e-12),
          );
          // Drain every bucket greedily at a few points in time; count what all of them grant.
          let granted = 0;
          for (const t of [0, Math.floor(durationMs / 3), Math.floor(durationMs / 2), durationMs]) {
            for (const bucket of buckets) {
              while (bucket.take(t).ok) granted++;
            }
          }
          const allowed = burstTotal + Math.floor((perSecond * durationMs) / 1000);
          assert.ok(granted <= allowed, `${granted} granted, at most ${allowed} allowed`);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('never creates tokens when time goes backwards', () => {
    const bucket = new TokenBucket({ perSecond: 10, burst: 2 }, 1);
    assert.equal(bucket.take(10_000).ok, true);
    assert.equal(bucket.take(10_000).ok, true);
    assert.equal(bucket.take(10_000).ok, false);
    for (const t of [9_000, 0, -1e12, 5_000, 9_999, 10_000, Number.NaN, -Infinity]) {
      assert.equal(bucket.take(t).ok, false, `at ${t}`);
    }
    // The clock catching up adds nothing for the time it spent behind.
    assert.equal(bucket.take(10_099).ok, false);
    assert.equal(bucket.take(10_100).ok, true);

    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -1_000_000, max: 1_000_000 }), { minLength: 1, maxLength: 200 }),
        fc.integer({ min: 1, max: 1000 }),
        fc.integer({ min: 1, max: 50 }),
        (times, perSecond, burst) => {
          const bucket = new TokenBucket({ perSecond, burst }, 1);
          let granted = 0;
          for (const t of times) if (bucket.take(t).ok) granted++;
          // Only forward movement of the highest time seen so far may refill.
          let high = times[0] ?? 0;
          let forwardMs = 0;
          for (const t of times) {
            if (t > high) [forwardMs, high] = [forwardMs + t - high, t];
          }
          assert.ok(granted <= burst + Math.floor((perSecond * forwardMs) / 1000));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('refuses a limit or worker count that is not a positive whole number', () => {
    for (const [limit, workers] of [
      [{ perSecond: 0, burst: 1 }, 1],
      [{ perSecond: 1, burst: 0 }, 1],
      [{ perSecond: 1.5, burst: 1 }, 1],
      [{ perSecond: 1, burst: Number.NaN }, 1],
      [{ perSecond: 1, burst: 1 }, 0],
      [{ perSecond: 1, burst: 1 }, 2.5],
    ] as const) {
      assert.throws(() => new TokenBucket(limit, workers), RangeError);
    }
  });
});

describe('canonicalAddress', { timeout: 10_000 }, () => {
  it('writes uWebSockets.js full-group IPv6 text the way an operator does', () => {
    const cases: Array<[string, string]> = [
      ['0000:0000:0000:0000:0000:ffff:cb00:7105', '203.0.113.5'],
      ['2001:0db8:0000:0000:0000:0000:0000:0005', '2001:db8::5'],
      ['0000:0000:0000:0000:0000:0000:0000:0001', '::1'],
      ['2001:0db8:0000:0001:0000:0000:0000:0009', '2001:db8:0:1::9'],
      ['203.0.113.5', '203.0.113.5'],
      ['not an address', 'not an address'],
      ['', ''],
    ];
    for (const [raw, expected] of cases) assert.equal(canonicalAddress(raw), expected, raw);
  });
});
