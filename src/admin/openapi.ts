// The OpenAPI 3.1 description of the admin HTTP API (served at /api/v1/openapi.json; a test checks it names every route).

const errorBody = {
  type: 'object',
  required: ['error', 'message'],
  properties: {
    error: { type: 'string', description: 'A stable code: unauthorized, forbidden, bad_request, invalid_replica, invalid_config, invalid_mirror, exists, not_found, is_primary, no_config_file, internal' },
    message: { type: 'string', description: 'What went wrong and what to do' },
    problems: { type: 'array', items: { type: 'object', properties: { path: { type: 'string' }, message: { type: 'string' } } } },
  },
};

const json = (description: string, schema: object = { type: 'object' }) => ({ description, content: { 'application/json': { schema } } });
const err = (description: string) => json(description, { $ref: '#/components/schemas/Error' });
const secured = { security: [{ bearer: [] }], responses: { 401: err('the admin token is missing or wrong') } };

function op(summary: string, responses: Record<string, unknown>, extra: Record<string, unknown> = {}, open = false) {
  return { summary, ...extra, ...(open ? { responses } : { security: secured.security, responses: { ...responses, ...secured.responses } }) };
}

const percentiles = { type: 'object', properties: { p50: { type: ['number', 'null'] }, p95: { type: ['number', 'null'] }, p99: { type: ['number', 'null'] } } };

const mirrorStatus = {
  type: 'object',
  description: 'Shadow traffic: the settings in effect and the totals since the start or the last reset of the report',
  properties: {
    enabled: { type: 'boolean' },
    target: { type: 'string', description: '"replicas", or "<name> (<host>:<port>)"' },
    statements: { enum: ['reads', 'all'] },
    sample_rate: { type: 'number' },
    databases: { type: 'array', items: { type: 'string' } },
    users: { type: 'array', items: { type: 'string' } },
    queue: { type: 'object', properties: { length: { type: 'integer' }, capacity: { type: 'integer' } } },
    running: { type: 'integer', description: 'copies running on the mirror now' },
    totals: {
      type: 'object',
      description: 'mirrored = matched + mismatched + lag + errors; lag: a replica had not replayed the primary position yet; errors: the copy could not run; dropped: copies not run (queue full, no target)',
      properties: Object.fromEntries(['mirrored', 'matched', 'mismatched', 'lag', 'errors', 'dropped'].map((k) => [k, { type: 'integer' }])),
    },
  },
};

const mirrorReport = {
  allOf: [
    { $ref: '#/components/schemas/MirrorStatus' },
    {
      type: 'object',
      properties: {
        fingerprints: {
          type: 'array',
          description: 'One row per statement fingerprint (constants replaced), the most mirrored first',
          items: {
            type: 'object',
            properties: {
              fingerprint: { type: 'string' },
              ...Object.fromEntries(['mirrored', 'matched', 'mismatched', 'lag', 'errors', 'dropped'].map((k) => [k, { type: 'integer' }])),
              primary_ms: { ...percentiles, description: 'latency of the client request on its own route, ms' },
              mirror_ms: { ...percentiles, description: 'latency of the copy on the mirror, ms' },
            },
          },
        },
      },
    },
  ],
};

const mirrorSettings = {
  type: 'object',
  description: 'Any fields of the mirror config section; the rest keep their values. In effect until the next reload or restart.',
  properties: {
    enabled: { type: 'boolean' },
    target: { oneOf: [{ const: 'replicas' }, { type: 'object', required: ['host'], properties: { name: { type: 'string' }, host: { type: 'string' }, port: { type: 'integer' } } }] },
    statements: { enum: ['reads', 'all'] },
    sample_rate: { type: 'number', minimum: 0, maximum: 1 },
    databases: { type: 'array', items: { type: 'string' } },
    users: { type: 'array', items: { type: 'string' } },
    pool_size: { type: 'integer' },
    queue_size: { type: 'integer' },
    timeout_ms: { type: 'integer' },
    max_events_per_second: { type: 'integer' },
  },
};

export function openApiDocument(): unknown {
  const node = { type: 'object', description: 'A node: name, host, port, weight, role, state, healthy, lag, connections, ...' };
  return {
    openapi: '3.1.0',
    info: {
      title: 'switchyard admin API',
      version: '1',
      description: 'Everything except /healthz, /readyz and / needs "Authorization: Bearer <admin.token>" when admin.token is set. Errors are JSON { error, message }.',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: { Error: errorBody, Node: node, MirrorStatus: mirrorStatus, MirrorReport: mirrorReport },
    },
    paths: {
      '/': { get: op('The dashboard page (its data comes from the API and the event stream, with the token)', { 200: { description: 'HTML' } }, {}, true) },
      '/healthz': { get: op('Alive', { 200: json('{"status":"ok"}') }, {}, true) },
      '/readyz': { get: op('Can serve: the primary accepts connections', { 200: json('ready'), 503: json('primary unreachable') }, {}, true) },
      '/metrics': { get: op('Prometheus metrics (text exposition format), names prefixed switchyard_', { 200: { description: 'text/plain; version=0.0.4' } }) },
      '/api/v1/status': { get: op('Everything at once: version, uptime, clients, pools, nodes, routing, event counts', { 200: json('status') }) },
      '/api/v1/nodes': { get: op('The primary and every other node with role, health, lag and connections', { 200: json('nodes', { type: 'array', items: { $ref: '#/components/schemas/Node' } }) }) },
      '/api/v1/pools': { get: op('Pools per node, database and user: idle, active, opening, waiting, maxwait', { 200: json('pools', { type: 'array' }) }) },
      '/api/v1/clients': { get: op('Connected clients: who, from where, state, what they are doing and on which node', { 200: json('clients', { type: 'array' }) }) },
      '/api/v1/config': { get: op('The configuration in effect, secrets redacted', { 200: json('config') }) },
      '/api/v1/topology': { get: op('The primary and the replicas as they are now, with the balancer settings', { 200: json('topology') }) },
      '/api/v1/replicas': {
        post: op(
          'Add a replica; it takes reads once it passes a probe',
          { 201: json('the new node', { type: 'object', properties: { replica: { $ref: '#/components/schemas/Node' } } }), 400: err('invalid body (every problem listed)'), 409: err('the name is taken') },
          { requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', required: ['host'], properties: { name: { type: 'string' }, host: { type: 'string' }, port: { type: 'integer' }, weight: { type: 'number' } } } } } } },
        ),
      },
      '/api/v1/replicas/{name}': {
        delete: op(
          'Remove a replica: drained (default; open transactions finish first) or at once (drain=false)',
          { 200: json('removed (wait=true)'), 202: json('draining or removing'), 400: err('bad query parameter'), 404: err('no such node'), 409: err('the node is the primary') },
          {
            parameters: [
              { name: 'name', in: 'path', required: true, schema: { type: 'string' } },
              { name: 'drain', in: 'query', schema: { type: 'boolean', default: true } },
              { name: 'wait', in: 'query', schema: { type: 'boolean', default: false } },
            ],
          },
        ),
      },
      '/api/v1/reload': { post: op('Read the config file again and apply it', { 200: json('{ applied, restart_required }'), 400: err('the file has problems; nothing changed'), 409: err('started without a config file') }) },
      '/api/v1/mirror': {
        get: op('Shadow traffic: the mirror settings in effect and the totals', { 200: json('mirror status', { $ref: '#/components/schemas/MirrorStatus' }) }),
        post: op(
          'Change mirroring at run time (on, off, target, sample rate, filters, ...), checked like the config file',
          { 200: json('the mirror status after the change', { $ref: '#/components/schemas/MirrorStatus' }), 400: err('invalid settings (every problem listed); nothing changed') },
          { requestBody: { required: true, content: { 'application/json': { schema: mirrorSettings } } } },
        ),
      },
      '/api/v1/mirror/report': {
        get: op(
          'Per statement fingerprint: outcome counts and p50/p95/p99 latency on the primary and on the mirror',
          {
            200: {
              description: 'the report (format=text: a line of totals, then the table switchyard mirror report prints)',
              content: { 'application/json': { schema: { $ref: '#/components/schemas/MirrorReport' } }, 'text/plain': { schema: { type: 'string' } } },
            },
            400: err('bad query parameter'),
          },
          { parameters: [{ name: 'format', in: 'query', schema: { enum: ['json', 'text'], default: 'json' } }] },
        ),
        delete: op('Start the report afresh: counts, latencies and totals (the Prometheus counters keep counting)', { 200: json('the report, now empty', { $ref: '#/components/schemas/MirrorReport' }) }),
      },
      '/api/v1/openapi.json': { get: op('This document', { 200: json('OpenAPI 3.1') }) },
      '/api/v1/events/stream': {
        get: op(
          'WebSocket: live events as JSON, one per message ({ type, at, ... }); the first is stream_started',
          { 101: { description: 'Switching protocols' } },
          {
            parameters: [
              { name: 'types', in: 'query', description: 'Comma-separated event types to receive (default: all but txn_routed, one per client transaction, which must be asked for by name)', schema: { type: 'string' } },
              { name: 'token', in: 'query', description: 'The admin token, for browsers (which cannot set the header on a WebSocket)', schema: { type: 'string' } },
            ],
          },
        ),
      },
    },
  };
}
