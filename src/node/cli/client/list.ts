import { parseCommand, parseCount } from "../args.js";
import { usageError } from "../cli-error.js";
import { Output } from "../output.js";
import { type ClientSubcommand, GLOBAL_HINT } from "./subcommand.js";
import { entryJson } from "./views.js";

const PATH = "geospool client list";

export const clientList: ClientSubcommand = {
  async run(args, io, ctx) {
    const parsed = await parseCommand(
      args,
      {
        path: PATH,
        help: `Usage: ${PATH} QUEUE [--checked-out] [--page-size N] [--page-token T] [--all] [--json]

Print the names of the entries available in QUEUE (or checked out of it), one a line, in
name order (oldest first), one page at a time. Without --all, when more pages follow, the
token of the next one is printed on standard error.

Options:
  --checked-out    list the entries checked out of QUEUE instead
  --page-size N    entries per page (node default 100, at most 1000)
  --page-token T   start at this page (a token printed by an earlier list)
  --all            follow every page to the end
  --json           print {"entries":[entry, ...],"nextPageToken":"..."} (entries are
                   written page by page)

${GLOBAL_HINT}`,
        options: {
          "checked-out": { type: "boolean" },
          "page-size": { type: "string" },
          "page-token": { type: "string" },
          all: { type: "boolean" },
          json: { type: "boolean" },
        },
        positionals: ["QUEUE"],
      },
      io,
    );
    if (!parsed) return 0;
    const [queue] = parsed.positionals as [string];
    const { values } = parsed;
    const pageSize =
      values["page-size"] === undefined
        ? undefined
        : parseCount("--page-size", values["page-size"]);
    if (pageSize === 0) throw usageError("--page-size: must be more than 0");
    const out = new Output(io, values.json === true);
    const client = ctx.client();
    let pageToken = values["page-token"] ?? "";
    let first = true;
    if (out.json) await out.write('{"entries":[');
    for (;;) {
      const page = await client.list(queue, {
        checkedOut: values["checked-out"] === true,
        ...(pageSize !== undefined ? { pageSize } : {}),
        pageToken,
      });
      if (out.json) {
        let text = "";
        for (const e of page.entries) {
          text += `${first ? "\n" : ",\n"}${JSON.stringify(entryJson(e))}`;
          first = false;
        }
        if (text) await out.write(text);
      } else if (page.entries.length > 0) {
        await out.write(`${page.entries.map((e) => e.name).join("\n")}\n`);
      }
      pageToken = page.nextPageToken;
      if (pageToken === "" || values.all !== true) break;
    }
    if (out.json)
      await out.write(`${first ? "" : "\n"}],"nextPageToken":${JSON.stringify(pageToken)}}\n`);
    else if (pageToken !== "") await out.note(`more entries: --page-token ${pageToken}`);
    return 0;
  },
};
