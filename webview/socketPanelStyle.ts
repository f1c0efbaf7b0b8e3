/**
 * The panel's styles, over the theme's own variables (VS Code sets them on the page), with the
 * Dark Modern values as fallbacks for the few a theme may leave out.
 */
export const PANEL_CSS = `
body {
  margin: 0;
  padding: 0 12px 12px;
  font-family: var(--vscode-font-family);
  font-size: var(--vscode-font-size);
  color: var(--vscode-foreground);
  background: var(--vscode-editor-background);
}
.bar {
  display: flex;
  flex-wrap: wrap;
  align-items: center;
  gap: 8px;
  padding: 8px 0;
  position: sticky;
  top: 0;
  z-index: 1;
  background: var(--vscode-editor-background);
}
#kind { width: 10em; }
#value { width: 14em; }
#interval { width: 7em; }
.muted { color: var(--vscode-descriptionForeground); }
.error { color: var(--vscode-errorForeground); margin: 4px 0; }
.error.big {
  padding: 8px 10px;
  border-left: 3px solid var(--vscode-errorForeground);
  background: var(--vscode-inputValidation-errorBackground, rgba(90, 29, 29, 0.5));
  color: var(--vscode-foreground);
}
.note {
  margin: 4px 0;
  padding: 4px 8px;
  border-left: 3px solid var(--vscode-editorWarning-foreground, #cca700);
  white-space: pre-wrap;
}
#where { margin: 2px 0 6px; }
.panes {
  display: grid;
  /* The table takes the width it needs (up to half and more); the text scrolls sideways anyway. */
  grid-template-columns: minmax(0, 1fr) minmax(0, max-content);
  gap: 12px;
  align-items: start;
}
@media (max-width: 1100px) {
  .panes { grid-template-columns: minmax(0, 1fr); }
}
.command, pre {
  font-family: var(--vscode-editor-font-family);
  font-size: var(--vscode-editor-font-size);
}
.command {
  color: var(--vscode-descriptionForeground);
  padding: 0 8px 4px;
  white-space: nowrap;
  overflow: hidden;
  text-overflow: ellipsis;
}
pre {
  margin: 0;
  padding: 8px;
  /* ss pads every record to the widest one: the lines scroll, they do not wrap, as in a terminal. */
  white-space: pre;
  tab-size: 8;
  overflow: auto;
  max-height: calc(100vh - 140px);
  color: var(--vscode-terminal-foreground, var(--vscode-foreground));
  background: var(--vscode-terminal-background, var(--vscode-textCodeBlock-background, #2b2b2b));
  border: 1px solid var(--vscode-panel-border, #2b2b2b);
}
.parsed { overflow: auto; max-height: calc(100vh - 120px); }
/* The UI font, narrower than the editor's, with figures of one width so columns of numbers line up. */
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th {
  position: sticky;
  top: 0;
  text-align: left;
  font-weight: 600;
  background: var(--vscode-editor-background);
  border-bottom: 1px solid var(--vscode-panel-border, #2b2b2b);
}
th, td { padding: 2px 6px; white-space: nowrap; }
.num { text-align: right; }
tbody tr:hover { background: var(--vscode-list-hoverBackground); }
tr.changed { background: var(--vscode-editor-findMatchHighlightBackground, rgba(234, 92, 0, 0.33)); }
tr.new { background: var(--vscode-diffEditor-insertedLineBackground, rgba(155, 185, 85, 0.2)); }
tr.changed td:first-child { box-shadow: inset 3px 0 var(--vscode-editorGutter-modifiedBackground, #0078d4); }
tr.new td:first-child { box-shadow: inset 3px 0 var(--vscode-editorGutter-addedBackground, #2ea043); }
td.diff { font-weight: 700; }
td.state.LISTEN { color: var(--vscode-descriptionForeground); }
td.state.SYN-SENT, td.state.FIN-WAIT-1, td.state.LAST-ACK { color: var(--vscode-editorWarning-foreground, #cca700); }
td.state.CLOSE-WAIT { color: var(--vscode-errorForeground); }
`;
