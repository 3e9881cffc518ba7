"""The project file's layout: the base schema and the additive migrations applied on open.

A file written by an older version gets the tables and columns it lacks (``_ADDED_TABLES``,
``_ADDED_COLUMNS``) in one transaction when it is opened for writing; a current file is only read.
"""

from __future__ import annotations

APP_ID = 0x504D5853  # "PMXS" stored in SQLite's application_id header field
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS task (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    progress TEXT NOT NULL DEFAULT '{}',
    message TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    heartbeat_at REAL
);
CREATE TABLE IF NOT EXISTS examples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER NOT NULL,
    slot TEXT NOT NULL,
    text TEXT NOT NULL,
    norm_text TEXT NOT NULL,
    label TEXT NOT NULL,
    intended_label TEXT NOT NULL,
    mixed_with TEXT,
    alpha REAL,
    mixup INTEGER NOT NULL DEFAULT 1,
    prompt TEXT NOT NULL DEFAULT '',
    raw_response TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    endpoint TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    llm_label TEXT,
    llm_raw TEXT,
    relabel_status TEXT,
    relabel_prompt TEXT,
    relabeled_at REAL,
    review_status TEXT NOT NULL DEFAULT 'pending',
    review_label TEXT,
    reviewed_at REAL,
    reviewed_by TEXT,
    version INTEGER NOT NULL DEFAULT 0,
    UNIQUE (job_id, norm_text),
    UNIQUE (job_id, slot)
);
CREATE INDEX IF NOT EXISTS examples_by_job ON examples(job_id);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER,
    name TEXT NOT NULL DEFAULT '',
    method TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    device TEXT NOT NULL DEFAULT '',
    model_dir TEXT,
    final_metrics TEXT NOT NULL DEFAULT '{}',
    error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    epoch REAL,
    name TEXT NOT NULL,
    value REAL NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics(run_id, id);
"""
# The LLM response cache (table ``llm_cache``) is declared once, in ``llm/cache.py``; files written by
# earlier versions keep theirs (unused: every entry point now shares ``paths.llm_cache_path()``).

# Additive migrations, applied on open when missing (see :func:`promptmix_core.store.base.StoreBase._migrate`). Append here; never
# edit an entry that has shipped. Tables: (name, "CREATE TABLE IF NOT EXISTS ...; CREATE INDEX ...");
# an index alone may be listed too, under its own name.
_ADDED_TABLES: list[tuple[str, str]] = [
    # one row per LLM generation call that gave kept examples: its prompt and answer are stored once
    # and the examples kept from it point at it (``examples.response_id``) instead of copying them
    (
        "responses",
        "CREATE TABLE IF NOT EXISTS responses (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL, "
        "call_key TEXT NOT NULL, class_name TEXT NOT NULL DEFAULT '', request_index INTEGER, mixed_with TEXT, "
        "alpha REAL, prompt TEXT NOT NULL DEFAULT '', raw_response TEXT NOT NULL DEFAULT '', finish_reason TEXT, "
        "model TEXT NOT NULL DEFAULT '', endpoint TEXT NOT NULL DEFAULT '', prompt_tokens INTEGER, "
        "completion_tokens INTEGER, created_at REAL NOT NULL, UNIQUE (job_id, call_key)); "
        "CREATE INDEX IF NOT EXISTS responses_by_job ON responses(job_id)",
    ),
    # Every review decision made through ``apply_review_batch`` / ``bulk_decide``, with what it replaced:
    # idempotent by the client's decision id, conflicts judged per browser tab, undo as a history per tab
    # (a unit is one decision or one bulk action). Also the index the review queue pages through.
    (
        "review_log",
        """CREATE TABLE IF NOT EXISTS review_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id TEXT NOT NULL UNIQUE,
    unit TEXT NOT NULL,
    tab TEXT NOT NULL DEFAULT '',
    reviewer TEXT,
    example_id INTEGER NOT NULL,
    action TEXT NOT NULL,
    label TEXT,
    prev_status TEXT NOT NULL,
    prev_label TEXT,
    prev_reviewed_at REAL,
    prev_reviewed_by TEXT,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    undo_of TEXT,
    undone INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS review_log_by_example ON review_log(example_id, version);
CREATE INDEX IF NOT EXISTS review_log_by_unit ON review_log(unit);
CREATE INDEX IF NOT EXISTS review_log_by_tab ON review_log(tab, id);
CREATE INDEX IF NOT EXISTS examples_by_review ON examples(review_status, id);
CREATE INDEX IF NOT EXISTS examples_review_cover ON examples(review_status, relabel_status, llm_confidence, flag,
    intended_label, llm_label, mixed_with)""",
    ),
    # MiniLM sentence vectors of generated examples (float16) and the class nearest by embedding
    # (against seeds and accepted examples), for the review queue's "most informative" order.
    (
        "example_vectors",
        """CREATE TABLE IF NOT EXISTS example_vectors (
    example_id INTEGER PRIMARY KEY,
    model TEXT NOT NULL,
    vec BLOB NOT NULL,
    nearest_label TEXT,
    nearest_score REAL
)""",
    ),
    # the project's test set: real labelled examples every training run is scored on (never trained on)
    ("test_examples", """
CREATE TABLE IF NOT EXISTS test_examples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    text TEXT NOT NULL,
    norm_text TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    added_at REAL NOT NULL
)"""),
    # exactly which rows (and labels) a training run used: split train / val / test, source seed /
    # generated / file / test_set; example_id is the examples row for generated ones
    ("run_examples", """
CREATE TABLE IF NOT EXISTS run_examples (
    run_id INTEGER NOT NULL,
    split TEXT NOT NULL,
    position INTEGER NOT NULL,
    source TEXT NOT NULL,
    example_id INTEGER,
    text TEXT NOT NULL,
    label TEXT NOT NULL,
    PRIMARY KEY (run_id, split, position)
)"""),
    # generation never adds a text the project already holds (any job): looked up by normalised text
    ("examples_by_norm", "CREATE INDEX IF NOT EXISTS examples_by_norm ON examples(norm_text)"),
]
# Columns: (table, column, SQL declaration with a default).
_ADDED_COLUMNS: list[tuple[str, str, str]] = [
    # the relabeler's confidence in its answer, in [0, 1] (from logprobs or candidate scoring); NULL: unknown
    ("examples", "llm_confidence", "REAL"),
    # why an example is probably junk ("meta-text", "near-copy of a seed", ...); '' when not flagged
    ("examples", "flag", "TEXT NOT NULL DEFAULT ''"),
    # the generation call the example came from (``responses.id``); NULL in files written before it,
    # whose examples carry their prompt and raw response inline
    ("examples", "response_id", "INTEGER"),
    # who started a job: "cli" (promptmix ... --project) or "" (the app); named when a second one is refused
    ("jobs", "origin", "TEXT NOT NULL DEFAULT ''"),
    # a second, no-LLM judge's suggestion (a class) and its confidence in [0, 1]; NULL: not judged
    ("examples", "judge_label", "TEXT"),
    ("examples", "judge_confidence", "REAL"),
]
