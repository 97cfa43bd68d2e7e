// The OpenAPI 3.1 description of the admin HTTP API (served at /api/v1/openapi.json; a test checks it names every route).

const errorBody = {
  type: 'object',
  required: ['error', 'message'],
  properties: {
    error: { type: 'string', description: 'A stable code: unauthorized, forbidden, bad_request, invalid_replica, invalid_config, exists, not_found, is_primary, no_config_file, internal' },
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
      schemas: { Error: errorBody, Node: node },
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
