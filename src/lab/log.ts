/**
 * One logger with levels and interchangeable sinks: stderr for the CLI, a LogOutputChannel in
 * the editor, an array in tests. Every external command is logged as its argv before it runs.
 */
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

const order: Record<LogLevel, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 };

export interface LogSink {
  write(level: LogLevel, message: string): void;
}

export class Logger {
  constructor(
    private readonly sink: LogSink,
    private readonly level: LogLevel = 'info',
  ) {}

  enabled(level: LogLevel): boolean {
    return order[level] >= order[this.level];
  }

  log(level: LogLevel, message: string): void {
    if (this.enabled(level)) this.sink.write(level, message);
  }

  trace(m: string): void { this.log('trace', m); }
  debug(m: string): void { this.log('debug', m); }
  info(m: string): void { this.log('info', m); }
  warn(m: string): void { this.log('warn', m); }
  error(m: string): void { this.log('error', m); }

  /** Log an argv about to run, quoted the way a person would paste it into a shell. */
  command(argv: readonly string[], where = ''): void {
    this.debug(`${where ? `[${where}] ` : ''}$ ${argv.map(quoteArg).join(' ')}`);
  }
}

/** For display only: commands are always run as argv arrays, never through a shell. */
export function quoteArg(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

export const stderrSink: LogSink = {
  write(level, message) {
    process.stderr.write(`${level === 'info' ? '' : `[${level}] `}${message}\n`);
  },
};

export class MemorySink implements LogSink {
  readonly lines: string[] = [];
  write(level: LogLevel, message: string): void {
    this.lines.push(`${level}: ${message}`);
  }
}

export const silentLogger = new Logger({ write() {} }, 'error');
