// The demo session manager of deploy/compose.yaml: opens a "session" for whoever nginx lets through.
// It does no kill-switch check of its own; nginx asked `killswitch authz` before forwarding the request.
// A real session manager can also embed the guard itself (README "Session managers").
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import process from 'node:process';

const port = Number(process.env.PORT ?? 8000);
const server = createServer((req, res) => {
  const agent = req.headers['x-spiffe-id'] ?? null;
  res.writeHead(201, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ session_id: randomUUID(), agent_id: agent, path: req.url }) + '\n');
});
server.listen(port, '0.0.0.0', () => process.stdout.write(JSON.stringify({ msg: 'demo session manager listening', port }) + '\n'));
for (const signal of ['SIGTERM', 'SIGINT']) process.once(signal, () => server.close(() => process.exit(0)));
