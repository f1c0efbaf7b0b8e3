import type * as vscode from 'vscode';
import { Logger, type LogLevel, type LogSink } from '../lab/log';

/**
 * The lab's logger over the editor's "TCP Lab" LogOutputChannel. The lab logs every command it
 * runs at its `debug` level (the CLI shows them with --verbose); the editor promises that list
 * by default, so the lab's debug lines go to the channel at info and its trace lines at debug.
 */
export function channelLogger(channel: vscode.LogOutputChannel): Logger {
  const sink: LogSink = {
    write(level, message) {
      // While the extension host shuts down the channel is closed and every write throws; the
      // teardown that logs its commands (removing rules) must still run.
      try {
        writeTo(level, message);
      } catch { /* channel closed */ }
    },
  };
  const writeTo = (level: LogLevel, message: string) => {
    switch (level) {
      case 'trace': channel.debug(message); break;
      case 'debug': channel.info(message); break;
      case 'info': channel.info(message); break;
      case 'warn': channel.warn(message); break;
      case 'error': channel.error(message); break;
      default: { const never: never = level; channel.info(String(never)); }
    }
  };
  return new Logger(sink, 'trace');
}
