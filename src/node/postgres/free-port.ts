import { createServer } from "node:net";

/**
 * A TCP port on 127.0.0.1 that was free a moment ago. PostgreSQL cannot listen on port 0 and
 * report the port it got, so the caller binds this port and retries with another one when it
 * lost the race.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === "object") resolve(address.port);
        else reject(new Error("could not read the bound port"));
      });
    });
  });
}
