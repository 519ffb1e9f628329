/**
 * Partner verification building blocks (src/worker/partners/): Standard Webhooks HMAC, the
 * webhook-id replay guard and the WeChat server signature. Pure functions of their inputs.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ReplayGuard } from '../../src/worker/partners/replay-guard.js';
import {
  signStandardWebhook,
  StandardWebhookVerifier,
} from '../../src/worker/partners/standard-webhooks.js';
import {
  verifyWechatSignature,
  wechatSignature,
} from '../../src/worker/partners/wechat-signature.js';

// The Standard Webhooks specification's published test vector; also reproduced here with
// `openssl dgst -sha256 -mac HMAC -macopt hexkey:<base64-decoded secret> -binary | base64`.
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const ID = 'msg_p5jXN8AQM9LWM0D4loKWxJek';
const TIMESTAMP = 1614265330;
const BODY = Buffer.from('{"test": 2432232314}');
const SIGNATURE = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';

const OTHER_SECRET = `whsec_${Buffer.from('a rotated-in secret, 32 bytes!!!').toString('base64')}`;
const TOLERANCE = 300;

function headers(signature: string | undefined = SIGNATURE, timestamp = String(TIMESTAMP)) {
  return { id: ID, timestamp, signature };
}

describe('signStandardWebhook', { timeout: 10_000 }, () => {
  it('reproduces the specification test vector', () => {
    assert.equal(signStandardWebhook(SECRET, ID, TIMESTAMP, BODY), SIGNATURE);
    assert.equal(signStandardWebhook(SECRET, ID, TIMESTAMP, BODY.toString()), SIGNATURE);
  });

  it('signs the body bytes, not their text decoding', () => {
    // Not valid UTF-8; decoding it as text would turn ff, fe and 80 into U+FFFD first.
    // Expected value from: { printf 'msg_bytes.1614265330.'; printf '\xff\xfe<x>\x80'; } |
    //   openssl dgst -sha256 -mac HMAC -macopt hexkey:<key> -binary | base64
    const body = Buffer.from([0xff, 0xfe, 0x3c, 0x78, 0x3e, 0x80]);
    const signature = signStandardWebhook(SECRET, 'msg_bytes', TIMESTAMP, body);
    assert.equal(signature, 'v1,Oi8LgYxOc+NH950dEKL/mgwNZPrfdAX7o8/9sGoWnGA=');
    assert.notEqual(
      signStandardWebhook(SECRET, 'msg_bytes', TIMESTAMP, body.toString()),
      signature,
    );
    const verifier = new StandardWebhookVerifier([SECRET], TOLERANCE);
    const request = { id: 'msg_bytes', timestamp: String(TIMESTAMP), signature };
    assert.deepEqual(verifier.verify(request, body, TIMESTAMP), { ok: true, id: 'msg_bytes' });
  });
});

describe('StandardWebhookVerifier', { timeout: 10_000 }, () => {
  const verifier = new StandardWebhookVerifier([SECRET], TOLERANCE);

  it('accepts the specification test vector and returns the webhook id', () => {
    assert.deepEqual(verifier.verify(headers(), BODY, TIMESTAMP), { ok: true, id: ID });
  });

  it('accepts a request signed with either secret during a rotation', () => {
    const rotating = new StandardWebhookVerifier([OTHER_SECRET, SECRET], TOLERANCE);
    const byNew = signStandardWebhook(OTHER_SECRET, ID, TIMESTAMP, BODY);
    assert.notEqual(byNew, SIGNATURE);
    assert.deepEqual(rotating.verify(headers(byNew), BODY, TIMESTAMP), { ok: true, id: ID });
    assert.deepEqual(rotating.verify(headers(SIGNATURE), BODY, TIMESTAMP), { ok: true, id: ID });
    // The old verifier does not know the new secret.
    assert.deepEqual(verifier.verify(headers(byNew), BODY, TIMESTAMP), {
      ok: false,
      reason: 'mismatch',
    });
  });

  it('accepts when any of several signatures matches, wherever it stands', () => {
    const wrong = 'v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
    for (const list of [`${wrong} ${SIGNATURE}`, `${SIGNATURE} ${wrong}`, `v1,x  ${SIGNATURE}`]) {
      assert.deepEqual(verifier.verify(headers(list), BODY, TIMESTAMP), { ok: true, id: ID });
    }
    assert.deepEqual(verifier.verify(headers(`${wrong} v1,short`), BODY, TIMESTAMP), {
      ok: false,
      reason: 'mismatch',
    });
  });

  it('ignores entries of other versions', () => {
    const digest = SIGNATURE.slice('v1,'.length);
    assert.deepEqual(verifier.verify(headers(`v2,${digest}`), BODY, TIMESTAMP), {
      ok: false,
      reason: 'malformed',
    });
    assert.deepEqual(verifier.verify(headers(`v1a,${digest} v2,${digest}`), BODY, TIMESTAMP), {
      ok: false,
      reason: 'malformed',
    });
    assert.deepEqual(verifier.verify(headers(`v2,${digest} ${SIGNATURE}`), BODY, TIMESTAMP), {
      ok: true,
      id: ID,
    });
  });

  it('refuses a body with one byte changed', () => {
    for (let i = 0; i < BODY.length; i++) {
      const tampered = Buffer.from(BODY);
      tampered[i] = (tampered[i] ?? 0) ^ 0x01;
      assert.deepEqual(verifier.verify(headers(), tampered, TIMESTAMP), {
        ok: false,
        reason: 'mismatch',
      });
    }
  });

  it('refuses a signature presented with another webhook id or timestamp', () => {
    const request = { ...headers(), id: 'msg_p5jXN8AQM9LWM0D4loKWxJeK' };
    assert.deepEqual(verifier.verify(request, BODY, TIMESTAMP), { ok: false, reason: 'mismatch' });
    const later = headers(SIGNATURE, String(TIMESTAMP + 1));
    assert.deepEqual(verifier.verify(later, BODY, TIMESTAMP), { ok: false, reason: 'mismatch' });
  });

  it('refuses a signature spelled differently than the digest base64', () => {
    const unpadded = SIGNATURE.replace(/=$/, '');
    assert.deepEqual(verifier.verify(headers(unpadded), BODY, TIMESTAMP), {
      ok: false,
      reason: 'mismatch',
    });
  });

  it('accepts at the tolerance edge and refuses beyond it, in both directions', () => {
    for (const now of [TIMESTAMP - TOLERANCE, TIMESTAMP + TOLERANCE]) {
      assert.deepEqual(verifier.verify(headers(), BODY, now), { ok: true, id: ID });
    }
    for (const now of [TIMESTAMP - TOLERANCE - 1, TIMESTAMP + TOLERANCE + 1, Date.now() / 1000]) {
      assert.deepEqual(verifier.verify(headers(), BODY, now), { ok: false, reason: 'expired' });
    }
  });

  it('reports each missing header as missing', () => {
    const complete = headers();
    for (const name of ['id', 'timestamp', 'signature'] as const) {
      for (const absent of [undefined, '']) {
        const request = { ...complete, [name]: absent };
        assert.deepEqual(verifier.verify(request, BODY, TIMESTAMP), {
          ok: false,
          reason: 'missing',
        });
      }
    }
  });

  it('reports a timestamp that is not whole seconds as malformed', () => {
    for (const timestamp of ['1614265330.0', ' 1614265330', '1.614e9', '0x603', '-1', 'now']) {
      assert.deepEqual(verifier.verify(headers(SIGNATURE, timestamp), BODY, TIMESTAMP), {
        ok: false,
        reason: 'malformed',
      });
    }
  });

  it('refuses at construction a secret without the prefix or with invalid base64', () => {
    assert.throws(() => new StandardWebhookVerifier(['MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'], 300), {
      message: /secret #1 does not start with "whsec_"/,
    });
    for (const bad of ['whsec_', 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS!', 'whsec_MfKQ9r8G KYq=']) {
      assert.throws(
        () => new StandardWebhookVerifier([SECRET, bad], 300),
        (error: Error) => {
          assert.match(error.message, /secret #2 is not valid base64/);
          // The secret itself never appears in the message.
          assert.ok(!error.message.includes(bad.slice('whsec_'.length) || 'whsec_x'));
          return true;
        },
      );
    }
    assert.throws(() => new StandardWebhookVerifier([], 300), /at least one/);
    assert.throws(() => signStandardWebhook('secret', ID, TIMESTAMP, BODY), /whsec_/);
  });

  it('never returns the secret or the expected signature', () => {
    const result = verifier.verify(headers('v1,wrong'), BODY, TIMESTAMP);
    const text = JSON.stringify(result);
    assert.deepEqual(result, { ok: false, reason: 'mismatch' });
    assert.ok(!text.includes(SIGNATURE.slice(3)) && !text.includes(SECRET.slice(6)));
  });
});

describe('ReplayGuard', { timeout: 10_000 }, () => {
  it('refuses the second sight of an id', () => {
    const guard = new ReplayGuard(TOLERANCE);
    assert.equal(guard.seen('a', 1000), false);
    assert.equal(guard.seen('a', 1000), true);
    assert.equal(guard.seen('a', 1001), true);
    assert.equal(guard.seen('b', 1001), false);
  });

  it('keeps an id for twice the tolerance, then lets it through again', () => {
    // Accepted at 1000 with a timestamp up to 1300, the request is still within tolerance at
    // 1600; one second later it would be refused as expired anyway.
    const guard = new ReplayGuard(TOLERANCE);
    assert.equal(guard.seen('a', 1000), false);
    assert.equal(guard.seen('a', 1000 + 2 * TOLERANCE), true);
    assert.equal(guard.seen('a', 1000 + 2 * TOLERANCE + 1), false);
    assert.equal(guard.seen('a', 1000 + 2 * TOLERANCE + 2), true);
  });

  it('prunes expired ids as new ones arrive', () => {
    const guard = new ReplayGuard(10);
    for (let i = 0; i < 50; i++) guard.seen(`old-${i}`, 1000);
    assert.equal(guard.size, 50);
    guard.seen('new', 1021);
    assert.equal(guard.size, 1);
  });

  it('drops the oldest id when full', () => {
    const guard = new ReplayGuard(TOLERANCE, { maxEntries: 3 });
    for (const id of ['a', 'b', 'c']) assert.equal(guard.seen(id, 1000), false);
    assert.equal(guard.seen('d', 1001), false);
    assert.equal(guard.size, 3);
    assert.equal(guard.seen('a', 1002), false, 'a was the oldest and was dropped');
    assert.equal(guard.seen('c', 1002), true);
    assert.equal(guard.seen('d', 1002), true);
  });

  it('answers like a plain map of expiries under any mix of sightings, forgets and passing time, across queue compactions', () => {
    const tolerance = 5;
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('seen' as const),
        id: fc.integer({ min: 0, max: 12 }),
        dt: fc.integer({ min: 0, max: 4 }),
      }),
      fc.record({
        kind: fc.constant('forget' as const),
        id: fc.integer({ min: 0, max: 12 }),
        dt: fc.constant(0),
      }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const guard = new ReplayGuard(tolerance);
        const model = new Map<string, number>();
        // 1,500 ids that expire before the ops start: dropping them compacts the queue.
        for (let i = 0; i < 1500; i++) guard.seen(`warm-${i}`, 0);
        let now = 2 * tolerance + 1;
        for (const { kind, id, dt } of ops) {
          now += dt;
          const key = `id-${id}`;
          if (kind === 'forget') {
            guard.forget(key);
            model.delete(key);
            continue;
          }
          const until = model.get(key);
          const expected = until !== undefined && until >= now;
          if (!expected) model.set(key, now + 2 * tolerance);
          assert.equal(guard.seen(key, now), expected, `${key} at ${now}`);
        }
      }),
      { numRuns: 60 },
    );
  });

  it('when full, always lets go of the id inserted longest ago, whatever was forgotten before', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 9 }), fc.boolean()), { maxLength: 200 }),
        (ops) => {
          const max = 3;
          const guard = new ReplayGuard(1000, { maxEntries: max });
          let live: string[] = []; // insertion order, oldest first
          for (const [id, forget] of ops) {
            const key = `id-${id}`;
            if (forget) {
              guard.forget(key);
              live = live.filter((k) => k !== key);
              continue;
            }
            const expected = live.includes(key);
            assert.equal(guard.seen(key, 1), expected, key);
            if (!expected) {
              if (live.length >= max) live.shift();
              live.push(key);
            }
            assert.equal(guard.size, live.length);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('ids forgotten in a loop (failed deliveries) never push out a remembered one, before or after their entries are swept', () => {
    for (const cycles of [5, 5000]) {
      const guard = new ReplayGuard(TOLERANCE, { maxEntries: 3 });
      guard.seen('kept', 1000);
      for (let i = 0; i < cycles; i++) {
        assert.equal(guard.seen(`failed-${i}`, 1000), false);
        guard.forget(`failed-${i}`);
      }
      guard.seen('next', 1000);
      assert.equal(guard.seen('kept', 1000), true, `${cycles} cycles: kept is still refused`);
      assert.equal(guard.seen(`failed-${cycles - 1}`, 1000), false, 'a forgotten id passes');
      assert.equal(guard.size, 3);
    }
  });

  it('refuses impossible options', () => {
    assert.throws(() => new ReplayGuard(300, { maxEntries: 0 }), /maxEntries/);
    assert.throws(() => new ReplayGuard(-1), /toleranceSeconds/);
  });
});

describe('WeChat server signature', { timeout: 10_000 }, () => {
  const TOKEN = 'pamtest';
  const params = { timestamp: '1409304348', nonce: 'xxxxxx' };
  // printf '%s' 1409304348pamtestxxxxxx | sha1sum  (the three values sorted, concatenated)
  const EXPECTED = '76480565cbe296026c53aaacd1ad523a1ddba24f';

  it('matches a vector computed with sha1sum', () => {
    assert.equal(wechatSignature(TOKEN, params.timestamp, params.nonce), EXPECTED);
  });

  it('sorts the three values before hashing, whatever their roles', () => {
    const sorted = ['zz-token', '1700000000', 'abc'].sort().join('');
    assert.equal(sorted, '1700000000abczz-token');
    const expected = createHash('sha1').update(sorted).digest('hex');
    assert.equal(wechatSignature('zz-token', '1700000000', 'abc'), expected);
    assert.equal(wechatSignature('abc', '1700000000', 'zz-token'), expected);
  });

  it('accepts the right signature, in lower or upper case', () => {
    for (const signature of [EXPECTED, EXPECTED.toUpperCase()]) {
      assert.deepEqual(verifyWechatSignature(TOKEN, { ...params, signature }), { ok: true });
    }
  });

  it('refuses a wrong signature, a wrong token or a changed parameter', () => {
    const flipped = `${EXPECTED.slice(0, -1)}e`;
    const cases = [
      [TOKEN, { ...params, signature: flipped }],
      [TOKEN, { ...params, signature: EXPECTED.slice(0, -1) }],
      [TOKEN, { ...params, signature: `${EXPECTED}0` }],
      ['other', { ...params, signature: EXPECTED }],
      [TOKEN, { ...params, nonce: 'xxxxxy', signature: EXPECTED }],
      [TOKEN, { ...params, timestamp: '1409304349', signature: EXPECTED }],
    ] as const;
    for (const [token, query] of cases) {
      assert.deepEqual(verifyWechatSignature(token, query), { ok: false, reason: 'mismatch' });
    }
  });

  it('reports a missing parameter as missing', () => {
    const complete = { ...params, signature: EXPECTED };
    for (const name of ['signature', 'timestamp', 'nonce'] as const) {
      assert.deepEqual(verifyWechatSignature(TOKEN, { ...complete, [name]: undefined }), {
        ok: false,
        reason: 'missing',
      });
    }
    assert.deepEqual(verifyWechatSignature(TOKEN, { ...complete, signature: '' }), {
      ok: false,
      reason: 'missing',
    });
  });
});
