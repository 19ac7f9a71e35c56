// A run's output in the run panel, bounded like a notebook cell's: pure logic, tested with jest.
//
// A run may print for weeks. The panel keeps what a notebook cell keeps (jupyter_split/commands/
// render.py, `Scrollback`): the first half of the window as printed, then one display holding the
// last lines, headed by how many lines it left out and how to see them all; the result, errors and
// rich output are kept whole, and a display updated by its display_id (a tqdm bar folded by the
// runner, runner/live.py) is updated in place rather than shown again. The window's size comes from
// the server (`[notebook] scrollback`), never from a number of our own.
import { eventToOutput } from './logic';

/** What the server says a window keeps (GET runs/RUN/events, `window`: server/tail.py). */
export interface WindowShape {
  /** Lines of text: the first half as printed, the rest the last lines. */
  lines: number;
  /** A longer line is cut there (the log keeps it whole). */
  long_line: number;
}

/** An nbformat output, as the panel's OutputArea takes it. */
export type Output = Record<string, unknown>;

/** What changed since the view last drew: redraw everything, or these outputs, then add the rest. */
export interface WindowChanges {
  cleared: boolean;
  /** Outputs already drawn whose content changed (a display updated, the tail redrawn). */
  set: number[];
  /** Outputs from this index on are new. */
  addFrom: number;
}

interface LogEvent {
  type: string;
  [key: string]: unknown;
}

/**
 * The index just past where `text` stops fitting in the window's head, which has room for
 * `linesLeft` more lines of at most `longLine` characters, its open line holding `open` already:
 * after the `linesLeft`-th newline, or at the start of a line that grows too long (the tail cuts it).
 * null where all of `text` fits (as render.py's `_after_lines`, a last newline at the end fits).
 */
export function headCut(text: string, linesLeft: number, open: number, longLine: number): number | null {
  if (linesLeft <= 0) {
    return 0;
  }
  let start = 0;
  let left = linesLeft;
  let held = open;
  for (;;) {
    const newline = text.indexOf('\n', start);
    const end = newline < 0 ? text.length : newline;
    if (held + end - start > longLine) {
      return start;
    }
    if (newline < 0) {
      return null;
    }
    left -= 1;
    held = 0;
    start = newline + 1;
    if (left === 0) {
      return start < text.length ? start : null;
    }
  }
}

/** A line cut at `longLine` characters, saying how many more it had (render.py's `_short`). */
export function shortLine(line: string, longLine: number, extra = 0): string {
  const more = extra + Math.max(0, line.length - longLine);
  return more > 0 ? `${line.slice(0, longLine)}… (${more.toLocaleString('en-US')} more characters)` : line;
}

/** The tail display's head: what was left out, and the commands that show it all. */
export function leftOutNote(runId: string, lines: number, records: number): string {
  if (lines <= 0 && records <= 0) {
    return '';
  }
  const count = (n: number) => n.toLocaleString('en-US');
  const what =
    records > 0
      ? `${count(records)} earlier records${lines > 0 ? ` and ${count(lines)} lines` : ''}`
      : `${count(lines)} lines`;
  return `… ${what} left out here: \`%split logs ${runId}\` (\`jupyter-split logs ${runId}\` in a terminal) shows them all\n`;
}

/**
 * The outputs a run panel shows, folded from the run's event-log records one at a time. Its text
 * holds at most `shape.lines` lines however many records come; `takeChanges` says what to redraw.
 */
export class OutputWindow {
  /**
   * @param skipped records of the log before the first one this window gets (the panel opened on the
   *   log's tail): their output is left out, said at the top, and the whole window holds the last lines.
   */
  constructor(
    readonly shape: WindowShape,
    readonly runId: string,
    skipped = 0
  ) {
    this._reset(skipped);
  }

  /** Lines of text left out so far (besides the `skipped` records). */
  get leftOut(): number {
    return this._leftOut;
  }

  /** Lines of text the window holds (the head's as printed, the tail's last lines). */
  get heldLines(): number {
    return this._streamed + this._tail.length + (this._partial ? 1 : 0);
  }

  /** The outputs, in order, as they are to be shown now. */
  get outputs(): readonly Output[] {
    this._drawTail();
    return this._outputs;
  }

  /** Fold in one record of the run's event log; a record that shows nothing is passed over. */
  add(event: LogEvent): void {
    if (event.type === 'clear') {
      // As in Jupyter: with `wait`, the outputs go when the next one comes (no flicker).
      if (event.wait) {
        this._clearAtNext = true;
      } else {
        this._clear();
      }
      return;
    }
    const output = eventToOutput(event);
    if (!output) {
      return;
    }
    if (this._clearAtNext) {
      this._clear();
    }
    if (event.type === 'stream') {
      this._text(String(event.name), String(event.text ?? ''));
    } else if (event.type === 'display') {
      this._display(output, event);
    } else {
      this._outputs.push(output);
    }
  }

  /** What changed since the last call (the view draws it): the tail is drawn once per call, not per record. */
  takeChanges(): WindowChanges {
    this._drawTail();
    const changes: WindowChanges = {
      cleared: this._cleared,
      set: Array.from(this._changed).sort((a, b) => a - b),
      addFrom: this._cleared ? 0 : this._drawn
    };
    this._drawn = this._outputs.length;
    this._changed.clear();
    this._cleared = false;
    return changes;
  }

  /** The tail display's text: the note on what was left out, then the last lines. */
  tailText(): string {
    const open = this._partial || this._partialExtra ? shortLine(this._partial, this.shape.long_line, this._partialExtra) : '';
    return leftOutNote(this.runId, this._leftOut, this._skipped) + this._tail.join('') + open;
  }

  private _text(name: string, text: string): void {
    if (this._tailAt === null) {
      const cut = headCut(text, this._head - this._streamed, this._open, this.shape.long_line);
      const head = cut === null ? text : text.slice(0, cut);
      if (head) {
        this._stream(name, head);
        const newlines = head.split('\n').length - 1;
        this._streamed += newlines;
        this._open = newlines ? head.length - head.lastIndexOf('\n') - 1 : this._open + head.length;
      }
      if (cut === null) {
        return;
      }
      this._tailAt = this._outputs.push({}) - 1;
      text = text.slice(cut);
    }
    this._toTail(text);
  }

  /** Text for the head: one stream output per run of text on one stream, as a notebook shows it. */
  private _stream(name: string, text: string): void {
    const at = this._outputs.length - 1;
    const last = this._outputs[at];
    if (last && last.output_type === 'stream' && last.name === name) {
      this._outputs[at] = { ...last, text: String(last.text) + text };
      this._mark(at);
    } else {
      this._outputs.push({ output_type: 'stream', name, text });
    }
  }

  /** Text for the tail: its last `room` lines stay, the older ones are counted as left out. */
  private _toTail(text: string): void {
    let pieces = text.split('\n');
    const ended = pieces.length - 1; // lines this text ends
    if (ended > this._room) {
      // Lines that cannot stay are never held: the ones kept before them and the open line go too.
      const drop = ended - this._room;
      this._leftOut += this._tail.length + drop;
      this._tail = [];
      this._partial = '';
      this._partialExtra = 0;
      pieces = pieces.slice(drop);
    }
    pieces.forEach((piece, i) => {
      const room = this.shape.long_line - this._partial.length;
      this._partial += piece.slice(0, Math.max(0, room));
      this._partialExtra += Math.max(0, piece.length - Math.max(0, room));
      if (i < pieces.length - 1) {
        this._tail.push(shortLine(this._partial, this.shape.long_line, this._partialExtra) + '\n');
        this._partial = '';
        this._partialExtra = 0;
      }
    });
    const over = this._tail.length - this._room;
    if (over > 0) {
      this._tail.splice(0, over);
      this._leftOut += over;
    }
    this._tailChanged = true;
  }

  private _display(output: Output, event: LogEvent): void {
    const transient = event.transient as { display_id?: string } | undefined;
    const id = transient?.display_id;
    const shown = id ? this._ids.get(id) : undefined;
    if (id && event.update && shown) {
      for (const at of shown) {
        this._outputs[at] = output;
        this._mark(at);
      }
      return;
    }
    // An update of a display this window never got (it opened on the log's tail) shows it from now on.
    const at = this._outputs.push(output) - 1;
    if (id) {
      this._ids.set(id, [...(shown ?? []), at]);
    }
  }

  private _drawTail(): void {
    if (this._tailAt !== null && this._tailChanged) {
      this._outputs[this._tailAt] = { output_type: 'display_data', data: { 'text/plain': this.tailText() }, metadata: {} };
      this._mark(this._tailAt);
      this._tailChanged = false;
    }
  }

  private _mark(at: number): void {
    if (at < this._drawn) {
      this._changed.add(at);
    }
  }

  private _clear(): void {
    this._reset(0);
    this._cleared = true;
  }

  private _reset(skipped: number): void {
    this._outputs = [];
    this._ids = new Map();
    this._skipped = skipped;
    // Opened mid-log, there is no head to show: the whole window is the last lines.
    this._head = skipped > 0 ? 0 : Math.floor(this.shape.lines / 2);
    this._room = this.shape.lines - this._head;
    this._streamed = 0;
    this._open = 0;
    this._tail = [];
    this._partial = '';
    this._partialExtra = 0;
    this._leftOut = 0;
    this._clearAtNext = false;
    this._drawn = 0;
    this._changed = new Set();
    // The note on the skipped records heads the window from the start.
    this._tailAt = skipped > 0 ? this._outputs.push({}) - 1 : null;
    this._tailChanged = skipped > 0;
  }

  private _outputs: Output[] = [];
  private _ids = new Map<string, number[]>();
  private _skipped = 0;
  private _head = 0;
  private _room = 0;
  private _streamed = 0; // lines of the head
  private _open = 0; // characters of the head's last line, not ended yet
  private _tailAt: number | null = null; // where the tail display is, once the head is full
  private _tail: string[] = [];
  private _partial = ''; // the tail's last line, not ended yet (cut at long_line) ...
  private _partialExtra = 0; // ... and the characters cut from it
  private _tailChanged = false;
  private _leftOut = 0;
  private _clearAtNext = false;
  private _drawn = 0; // outputs the view has
  private _changed = new Set<number>();
  private _cleared = false;
}
