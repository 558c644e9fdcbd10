export interface KubeconfigOptions {
  token?: string;
  tokenFile?: string;
  namespace?: string;
  context?: string;
}

/** A kubeconfig (YAML) for `url`: the CA inline, the token inline or as kubectl's `tokenFile`. */
export function kubeconfigYaml(url: string, caPem: string, token: string, o: KubeconfigOptions = {}): string {
  const ctx = o.context ?? 'fake';
  const user = o.tokenFile
    ? `    tokenFile: ${JSON.stringify(o.tokenFile)}`
    : `    token: ${JSON.stringify(o.token ?? token)}`;
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${ctx}-cluster`,
    '  cluster:',
    `    server: ${url}`,
    `    certificate-authority-data: ${Buffer.from(caPem).toString('base64')}`,
    'users:',
    `- name: ${ctx}-user`,
    '  user:',
    user,
    'contexts:',
    `- name: ${ctx}`,
    '  context:',
    `    cluster: ${ctx}-cluster`,
    `    user: ${ctx}-user`,
    ...(o.namespace ? [`    namespace: ${o.namespace}`] : []),
    `current-context: ${ctx}`,
    '',
  ].join('\n');
}
