{{/*
Egress rules shared by the chart's NetworkPolicies: cluster DNS (the kube-dns Pods, CoreDNS included), the API
server (by address when networkPolicy.apiServer.cidrs is set, else by port alone), and the ports of external
Redis and Consul (by port: their addresses are outside the cluster's knowledge).
*/}}

{{- define "mcpfleet.netpol.dns" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - port: {{ .Values.networkPolicy.dns.port }}
      protocol: UDP
    - port: {{ .Values.networkPolicy.dns.port }}
      protocol: TCP
{{- end }}

{{- define "mcpfleet.netpol.apiServer" -}}
- ports:
    {{- range .Values.networkPolicy.apiServer.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .Values.networkPolicy.apiServer.cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
{{- end }}

{{- define "mcpfleet.netpol.external" -}}
{{- with .Values.networkPolicy.externalPorts }}
- ports:
    {{- range . }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}

{{/* The server Pods the operator runs, in any namespace (their MCPServer chooses the port). */}}
{{- define "mcpfleet.netpol.servers" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          app.kubernetes.io/component: mcp-server
{{- end }}
