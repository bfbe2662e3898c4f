import { makeDevCerts } from "../certs/index.js";
import { parseCommand, parseList } from "./args.js";
import { usageError } from "./cli-error.js";
import { type Command, commandGroup } from "./command.js";
import { Output } from "./output.js";

const PATH = "geospool certs dev";

const certsDev: Command = {
  name: "dev",
  summary: "make a local CA, server certificates per node and a client certificate",
  async run(args, io) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} [--dir .geospool/certs] [--nodes node-1,node-2,node-3] [--json]

Make (or reuse) a local certificate authority, a server certificate per node valid for
127.0.0.1, ::1 and localhost, and a client certificate for mutual TLS, with openssl.
For development only. Point grpc.tls.cert/key/clientCa at the printed files.`,
        options: { dir: { type: "string" }, nodes: { type: "string" }, json: { type: "boolean" } },
        positionals: [],
      },
      io,
    );
    if (!parsed) return 0;
    const nodes = parseList(parsed.values.nodes ?? "node-1,node-2,node-3");
    if (nodes.length === 0) throw usageError("certs dev: --nodes: give at least one node");
    const certs = await makeDevCerts({ dir: parsed.values.dir ?? ".geospool/certs", nodes });
    const lines = [`CA: ${certs.caCert}`];
    for (const [n, pair] of Object.entries(certs.servers))
      lines.push(`${n}: ${pair.cert} ${pair.key}`);
    lines.push(`client: ${certs.client.cert} ${certs.client.key}`);
    await new Output(io, parsed.values.json === true).result(lines.join("\n"), certs);
    return 0;
  },
};

export const certsCommand = commandGroup({
  name: "certs",
  path: "geospool certs",
  summary: "certificates for TLS and mutual TLS",
  commands: [certsDev],
});
