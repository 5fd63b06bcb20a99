// The seed's own router (@ruvector/tiny-dancer, Rust core through its Node binding), driven
// by benchmarks/test_seed.py: each stdin line "N CALLS" routes a query over N random
// candidates CALLS times and prints one JSON line with the medians of the round trip as
// Node sees it and of the core's own `inferenceTimeUs`.
const readline = require('readline');
const { Router } = require('@ruvector/tiny-dancer');

const DIM = 384;
const router = new Router({ modelPath: process.argv[2] || 'no-model.safetensors' });
const vector = () => Float32Array.from({ length: DIM }, () => Math.random() - 0.5);
const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
const requests = {};

function request(n) {
  if (!requests[n]) {
    const now = Date.now();
    const candidates = Array.from({ length: n }, (_, i) => ({
      id: `c${i}`, embedding: vector(), successRate: 0.9, accessCount: 3, createdAt: now - 1000,
    }));
    requests[n] = { queryEmbedding: vector(), candidates };
  }
  return requests[n];
}

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
  const [n, calls] = line.trim().split(/\s+/).map(Number);
  const body = request(n);
  const roundTrip = [];
  const inference = [];
  for (let i = 0; i < calls; i++) {
    const t0 = process.hrtime.bigint();
    const response = await router.route(body);
    roundTrip.push(Number(process.hrtime.bigint() - t0) / 1e3);
    inference.push(response.inferenceTimeUs);
  }
  process.stdout.write(JSON.stringify({ n, round_trip_us: median(roundTrip), inference_us: median(inference) }) + '\n');
});
