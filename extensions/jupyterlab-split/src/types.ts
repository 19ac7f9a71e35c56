// The shapes of the server's answers (jupyter_split/server/*.py): no JupyterLab imports, so jest can use them.

export interface Site {
  name: string;
  executor: string;
  jurisdiction: string;
  accelerator: string;
  storage: string | null;
  home: boolean;
  reachable: boolean;
  latency_ms: number | null;
  error?: string;
  host?: string;
  /** Slurm sites: `sinfo` lines (partition, availability, nodes, state), or why sinfo failed. */
  slurm?: string[] | string;
  /** Ray sites: the cluster's Ray version. */
  ray?: string;
  gpus?: string | number;
}

export interface Experiment {
  name: string;
  home: string;
  default_remote: string;
}

export interface Run {
  run_id: string;
  site: string;
  state: string;
  mode: string;
  name: string | null;
  created: number;
  updated: number;
  /** The run's state and last output line as its event log says, up to record `last_seq`. */
  last_seq: number;
  last_line: string;
  /** The notebook the run was started from, as Jupyter names it; null for a run from elsewhere. */
  notebook?: string | null;
}

export interface RunEvent {
  seq: number;
  type: string;
  [key: string]: unknown;
}

/** GET runs/RUN/events: the run as its log's end says, a batch of its records, and the window a panel keeps. */
export interface EventsAnswer {
  run: Run;
  events: RunEvent[];
  window: { lines: number; long_line: number };
}

export interface Checkpoint {
  site: string;
  url: string;
  name: string;
  bytes: number;
  files: number;
  residency: string | null;
  lineage: string[];
  run_id: string | null;
  created_ts: number;
}

export interface WandbRun {
  site: string;
  id: string;
  name: string;
  job_type: string;
  mode: string;
  url: string | null;
  state: string;
  split_run: string;
  metrics: Record<string, unknown>;
}

/** A copy the server runs in the background (GET transfers): its state, bytes, rate and time left. */
export interface TransferView {
  id: string;
  site: string;
  name: string;
  to_site: string;
  /** the server's (`states` of GET transfers): running, then how it ended */
  state: string;
  message: string;
  started: number;
  ended: number | null;
  /** asked to stop; it stops at its next bytes sent */
  cancelling: boolean;
  bytes_total: number;
  bytes_done: number;
  /** bytes a second since it began */
  rate: number;
  /** seconds left; null: not known, or ended */
  eta_s: number | null;
  /** the files to send, and those sent whole */
  files_total: number;
  files_done: number;
}

/** One card as its vendor's tool reports it (jupyter_split/accelerators/base.py Card); null: not given. */
export interface Card {
  vendor: string;
  model: string;
  index: number;
  utilisation: number | null;
  /** MiB */
  memory_used: number | null;
  memory_total: number | null;
  memory_percent: number | null;
  temperature: number | null;
  power: number | null;
  uuid: string | null;
  run: string | null;
  tool: string;
}

/** One machine of a site: its host's CPU and memory (MiB) and its cards. */
export interface Node {
  node: string | null;
  /** host (the site's machine), login (a Slurm site's login node) or compute (a node of a running job) */
  role?: string;
  /** a compute node's job and the run it is */
  job?: string;
  run?: string | null;
  cpu: { percent?: number | null; count?: number | null };
  memory: { total?: number; used?: number };
  cards: Card[];
  tools: string[];
  errors: string[];
}

/** A site's accelerators as last read (GET accelerators), with Slurm's nodes and jobs or Ray's resources. */
export interface SiteReading {
  site: string;
  executor: string;
  accelerator: string;
  time: number;
  age: number;
  nodes: Node[];
  errors: string[];
  slurm?: {
    nodes: { node: string; state: string; cpus: string; gres: string; cpus_allocated: string; cpus_total: string }[];
    jobs: { job_id: string; state: string; nodes: string; cards: string; elapsed: string; run: string | null }[];
    errors: string[];
  };
  ray?: {
    nodes: { node: string | null; state: string | null }[];
    /** per resource (CPU, GPU, NPU, custom ones): used (null: not reported) and total */
    resources: Record<string, { used: number | null; total: number }>;
    errors: string[];
  };
}

/** GET accelerators: every site's reading. */
export interface Accelerators {
  /** seconds: a reading younger than this is answered from the server's memory */
  interval: number;
  sites: SiteReading[];
}

/** A site's lease as configured beside the accelerator-hours its runs used (GET lease). */
export interface SiteLease {
  site: string;
  lease: {
    gpu_hours: number | null;
    monthly: boolean;
    price_per_gpu_hour: number | null;
    currency: string | null;
    ends: string | null;
  };
  configured: boolean;
  hours: number;
  month_hours: number;
  left: number | null;
  cost: number | null;
  month_cost: number | null;
  currency: string | null;
  days_left: number | null;
  runs_counted: number;
  /** the newest runs' accelerator-hours and cost (the sums count every run) */
  runs: { run_id: string; state: string; cards: number; hours: number; cost: number | null; source: string }[];
}

/** GET lease: every site's lease, and the experiment's use of them all. */
export interface Leases {
  sites: SiteLease[];
  experiment: { name: string; hours: number; cost: Record<string, number> };
}

/** An audit record as the border pane shows it (jupyter_split/server/border.py ENTRY_FIELDS). */
export interface AuditEntry {
  time: string | null;
  ts: number | null;
  user: string | null;
  kind: string | null;
  item: string | null;
  src: string | null;
  dest: string | null;
  bytes: number | null;
  from_site: string | null;
  to_site: string | null;
  to_jurisdiction: string | null;
  labels: string[] | Record<string, string> | null;
  decision: string | null;
  reason: string | null;
  run_id: string | null;
  findings?: { file: string | null; kind: string | null; where: string | null; masked: string | null }[];
}

/** The residency policy in force, as GET border shows it. */
export interface PolicyView {
  home: { site: string; jurisdiction: string };
  sites: { name: string; jurisdiction: string }[];
  resident: string[];
  allow_export: string[];
  metrics_abroad: string[] | null;
  scan: { enabled: boolean; depth: number; max_findings: number; disable: string[]; patterns: string[] };
  audit_log: string;
  source: string;
}

/** GET border: the policy, the newest audit records that pass the filters, how many did, and per decision how many. */
export interface Border {
  policy: PolicyView;
  entries: AuditEntry[];
  total: number;
  counts: Record<string, number>;
  /** Per decision, those of `counts` since the page's today began. */
  today?: Record<string, number>;
  /** The kinds of transfer in the audit log under the site and date filters: the kind filter's choices. */
  kinds?: string[];
}

/** The guard's dry run for one transfer (POST checkpoints/check). */
export interface TransferCheck {
  allowed: boolean;
  reasons: string[];
  message: string;
  labels: string[];
}

/** A cell given to a session: the run it became, and the first line of its code. */
export interface SessionRun {
  run_id: string;
  name: string | null;
  state: string;
  created: number;
  count: number | null;
  cell: string;
  /** The notebook its cell came from (as Jupyter names it: a path under the server's root); null from elsewhere. */
  notebook?: string | null;
}

/** A site's session as GET sessions reports it (jupyter_split/core/sessions.py). */
export interface Session {
  site: string;
  executor: string;
  /** false: the executor runs each cell as a runner of its own (Slurm, Ray) */
  supported: boolean;
  state: string;
  session: string | null;
  pid: number | null;
  /** seconds since the epoch */
  started: number | null;
  /** bytes */
  memory: number | null;
  running: SessionRun | null;
  queue: SessionRun[];
  errors: string[];
}

/** GET sessions. */
export interface Sessions {
  /** the session states, in order: the sidebar keeps no list of its own */
  states: string[];
  sites: Session[];
}
