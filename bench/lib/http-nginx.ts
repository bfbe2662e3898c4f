/**
 * nginx (the Debian package) as the floor of bench/http.ts: a child process with its own
 * configuration in a temp dir (not the system service), one worker, serving a directory
 * of static files with Debian's defaults where they matter (sendfile, tcp_nopush,
 * keepalive) and the binary cache's content types. Access logging is off, as the node
 * logs no request either.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";

export interface Nginx {
  port: number;
  /** The master process; its one worker is `workerPid`. */
  pid: number;
  workerPid: number;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  server.close();
  await once(server, "close");
  return port;
}

function config(dir: string, root: string, port: number): string {
  return `daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  types {
    text/x-nix-narinfo narinfo;
    application/x-nix-nar nar;
  }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:${port};
    root ${root};
    location ~ \\.narinfo$ { add_header Cache-Control "public, max-age=3600"; }
    location /nar/ { add_header Cache-Control "public, max-age=3600"; }
  }
}
`;
}

async function childPids(pid: number): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/task/${pid}/children`, "utf8").catch(() => "");
  return text.trim().split(/\s+/).filter(Boolean).map(Number);
}

export async function startNginx(dir: string, root: string): Promise<Nginx> {
  await mkdir(dir, { recursive: true });
  const port = await freePort();
  const conf = join(dir, "nginx.conf");
  await writeFile(conf, config(dir, root, port));
  const child: ChildProcess = spawn(
    "nginx",
    ["-p", dir, "-c", conf, "-e", join(dir, "error.log")],
    {
      stdio: ["ignore", "inherit", "inherit"],
    },
  );
  const exited = once(child, "exit");
  // Ready once it answers on its port (and its worker exists).
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}); see ${dir}`);
    const ok = await fetch(`http://127.0.0.1:${port}/`)
      .then(() => true)
      .catch(() => false);
    const workers = await childPids(child.pid as number);
    if (ok && workers.length === 1) {
      return {
        port,
        pid: child.pid as number,
        workerPid: workers[0] as number,
        async stop() {
          if (child.exitCode !== null) return;
          child.kill("SIGQUIT");
          await exited;
        },
      };
    }
    if (i > 200) throw new Error("nginx did not come up within 10 s");
    await new Promise((r) => setTimeout(r, 50));
  }
}
