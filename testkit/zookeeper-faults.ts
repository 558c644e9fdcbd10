/**
 * Fault injection for ZooKeeper tests. `hardClose(client)` stops a raw node-zookeeper-client dead,
 * as if its process had died: no closeSession is sent, so the session and its ephemeral nodes live
 * on until the server expires them, and it never reconnects.
 *
 * The vendor-internal code lives once, in adapters/zookeeper/client.ts (behind its fence comment),
 * because the shipped ZkSession needs it too: to stop the old client after a session expiry, after
 * close(), and for kill(). Tests take it from here, never from the adapter's client module.
 */
export { hardClose } from '../adapters/zookeeper/client';
