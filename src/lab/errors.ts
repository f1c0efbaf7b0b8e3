/**
 * Errors a user can act on. Every refusal of input names the field and the value, so the
 * CLI and the editor can show the message as it is.
 */
export interface LabErrorDetail {
  /** The input field that was refused, e.g. `port` or `rejectWith`. */
  field?: string;
  /** The refused value, as given (shown clipped). */
  value?: unknown;
  /** What to do about it: a package to install, a sysctl to change. */
  hint?: string;
}

export class LabError extends Error {
  readonly field?: string;
  readonly value?: unknown;
  readonly hint?: string;

  constructor(message: string, detail: LabErrorDetail = {}) {
    super(message);
    this.name = 'LabError';
    this.field = detail.field;
    this.value = detail.value;
    this.hint = detail.hint;
  }

  /** One or two lines for a person: the message, the clipped value, and the hint. */
  describe(): string {
    let text = this.message;
    if (this.field !== undefined && 'value' in this && this.value !== undefined) {
      text += ` (${this.field}: ${clip(this.value)})`;
    }
    if (this.hint) text += `\n  ${this.hint}`;
    return text;
  }
}

/** A value shown in an error message: JSON, at most 60 characters. */
export function clip(value: unknown): string {
  let s: string;
  try {
    s = typeof value === 'string' ? JSON.stringify(value) : String(JSON.stringify(value) ?? value);
  } catch {
    s = String(value);
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}
