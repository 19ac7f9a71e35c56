// Command ids, shared by the plugin, the sidebar and the settings schema.
export const CommandIDs = {
  openSidebar: 'jupyter-split:open-sidebar',
  refresh: 'jupyter-split:refresh',
  runCellOnSite: 'jupyter-split:run-cell-on-site',
  openRun: 'jupyter-split:open-run',
  cancelRun: 'jupyter-split:cancel-run',
  interruptRun: 'jupyter-split:interrupt-run',
  insertAttach: 'jupyter-split:insert-attach',
  transferCheckpoint: 'jupyter-split:transfer-checkpoint'
};
