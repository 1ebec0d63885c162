# web-02's policy layer as Nix data (services.diag.policy): its services' state
# directories where the derived deny list (module.nix) does not reach or says less,
# the recipes per service, what to run instead of root-only tools, and the examples
# `diag-wrapper lint` checks. nix/hosts/web-02.nix stacks it on the fleet policy the
# package ships; policy/web-02.toml is its rendering (scripts/render-host-policy), and
# tests/nix checks that the two are equal. Edit this file, then re-render.
{
  deny = [
    {
      path = "/var/lib/matrix-synapse";
      why = "Matrix synapse: signing key, registration and macaroon secrets, media";
    }
    {
      path = "/persist/var/lib/matrix-synapse";
      why = "Matrix synapse state (impermanence copy)";
    }
    {
      path = "/var/lib/mautrix-*";
      why = "mautrix bridges: appservice tokens, bridged account sessions";
    }
    {
      path = "/persist/var/lib/mautrix-*";
      why = "mautrix bridges state (impermanence copy)";
    }
    {
      path = "/var/lib/matrix-authentication-service";
      why = "matrix-authentication-service: signing keys, client secrets";
    }
    {
      path = "/persist/var/lib/matrix-authentication-service";
      why = "matrix-authentication-service state (impermanence copy)";
    }
    {
      path = "/var/lib/n8n";
      why = "n8n: encryption key and stored workflow credentials";
    }
    {
      path = "/persist/var/lib/n8n";
      why = "n8n state (impermanence copy)";
    }
    {
      path = "/var/lib/zammad";
      why = "zammad: secret key base, attachments, tickets";
    }
    {
      path = "/persist/var/lib/zammad";
      why = "zammad state (impermanence copy)";
    }
    {
      path = "/var/lib/postgresql";
      why = "PostgreSQL data of synapse, MAS, n8n and zammad (access tokens, sessions)";
    }
    {
      path = "/persist/var/lib/postgresql";
      why = "PostgreSQL data (impermanence copy)";
    }
    {
      path = "/var/lib/redis";
      why = "Redis state of the default instance (sessions, caches with tokens)";
    }
    {
      path = "/persist/var/lib/redis";
      why = "Redis state (impermanence copy)";
    }
    {
      path = "/var/lib/redis-*";
      why = "Redis state (sessions, caches with tokens)";
    }
    {
      path = "/persist/var/lib/redis-*";
      why = "Redis state (impermanence copy)";
    }
  ];
  instead = {
    "podman ps" = {
      run = "report containers";
      why = "the containers are root's: the containers report shows name, image, status and health";
    };
    "podman inspect" = {
      run = "report containers";
      why = "inspect prints the environment (secrets); the containers report shows their state";
    };
    nft = {
      run = "report firewall";
      why = "the ruleset is root's: the firewall report prints it";
    };
    iptables = {
      run = "report firewall";
      why = "the firewall is nftables; the firewall report prints the ruleset";
    };
    psql = {
      run = "report postgres-activity";
      why = "no database access; the postgres-activity report counts connections by state";
    };
    redis-cli = {
      run = "report redis-info";
      why = "no Redis access; the redis-info report prints INFO";
    };
  };
  examples = [
    {
      command = "report containers";
      decision = "allow";
    }
    {
      command = "report listening | grep 5432";
      decision = "allow";
    }
    {
      command = "report disk-usage";
      decision = "allow";
    }
    {
      command = "report shell";
      decision = "deny";
      code = "report.unknown";
    }
    {
      command = "report containers --all";
      decision = "deny";
      code = "match.too-many-args";
    }
    {
      command = "cat /var/lib/matrix-synapse/homeserver.signing.key";
      decision = "deny";
      code = "path.denied";
    }
    {
      command = "cat /persist/var/lib/n8n/.n8n/config";
      decision = "deny";
      code = "path.denied";
    }
    {
      command = "ls /var/lib/mautrix-telegram";
      decision = "deny";
      code = "path.denied";
    }
    {
      command = "tail /var/lib/matrix-authentication-service/config.yaml";
      decision = "deny";
      code = "path.denied";
    }
    {
      command = "grep -r secret /var/lib/zammad";
      decision = "deny";
      code = "path.denied";
    }
    {
      command = "du -sh /var/lib";
      decision = "deny";
      code = "path.tree-contains-denied";
    }
    {
      command = "systemctl status matrix-synapse.service";
      decision = "allow";
    }
    {
      command = "journalctl -u mautrix-telegram -n 50";
      decision = "allow";
    }
    {
      command = "curl -sS http://127.0.0.1:8282/healthz";
      decision = "allow";
    }
    {
      command = "curl -sS -I https://matrix.example.org/_matrix/client/versions";
      decision = "allow";
    }
    {
      command = "curl -sS http://127.0.0.1:9200/_search";
      decision = "deny";
      code = "match.bad-value";
    }
    {
      command = "du -sh /persist/var/lib/*";
      decision = "allow";
    }
  ];
  services = {
    invidious = {
      summary = "Invidious (YouTube front end), behind nginx";
      units = [ "invidious.service" ];
      probes = [ "http://127.0.0.1:3000/api/v1/stats" ];
      commands = [
        "journalctl -u invidious -n 100"
        "curl -sS -I -w '%{http_code} %{time_total}\\n' http://127.0.0.1:3000/api/v1/stats"
      ];
    };
    invidious-companion = {
      summary = "Invidious companion (potoken, video streams): rootful podman container";
      units = [ "podman-invidious-companion.service" ];
      containers = [ "invidious-companion" ];
      probes = [ "http://127.0.0.1:8282/healthz" ];
      commands = [
        "journalctl -u podman-invidious-companion -n 100"
        "journalctl CONTAINER_NAME=invidious-companion -n 100"
        "curl -sS -i http://127.0.0.1:8282/healthz"
        "report containers"
      ];
      notes = "stuck at 'Companion is starting... potoken': the container's journal says why (network, YouTube refusing, clock)";
    };
    matrix-synapse = {
      summary = "Matrix homeserver (client API on 8008, federation through nginx)";
      units = [ "matrix-synapse.service" ];
      probes = [
        "http://127.0.0.1:8008/health"
        "http://127.0.0.1:8008/_matrix/client/versions"
        "http://127.0.0.1:8008/_matrix/federation/v1/version"
        "http://127.0.0.1:8008/_matrix/key/v2/server"
        {
          url = "https://matrix.example.org/_matrix/client/versions";
          connect = "127.0.0.1";
        }
        {
          url = "https://matrix.example.org/.well-known/matrix/server";
          connect = "127.0.0.1";
        }
      ];
      commands = [
        "journalctl -u matrix-synapse -n 200"
        "journalctl -u matrix-synapse -g 'federation|backoff' -n 50"
        "curl -sS http://127.0.0.1:8008/health"
        "curl -sS -I https://matrix.example.org/_matrix/client/versions"
      ];
    };
    mautrix = {
      summary = "mautrix bridges (telegram, whatsapp, signal): one unit each";
      units = [
        "mautrix-telegram.service"
        "mautrix-whatsapp.service"
        "mautrix-signal.service"
      ];
      commands = [
        "systemctl status 'mautrix-*'"
        "journalctl -u mautrix-telegram -n 100"
        "coredumpctl list mautrix-telegram"
      ];
      notes = "crash-looping: NRestarts and Result in systemctl show -p NRestarts,Result UNIT; the first error after a restart";
    };
    matrix-authentication-service = {
      summary = "matrix-authentication-service (MAS): logins for synapse";
      units = [ "matrix-authentication-service.service" ];
      probes = [ "http://127.0.0.1:8080/health" ];
      commands = [
        "journalctl -u matrix-authentication-service -n 100"
        "curl -sS http://127.0.0.1:8080/health"
      ];
    };
    n8n = {
      summary = "n8n workflow automation, behind nginx (webhooks are never probed: GET runs workflows)";
      units = [ "n8n.service" ];
      probes = [
        "http://127.0.0.1:5678/healthz"
        "http://127.0.0.1:5678/healthz/readiness"
      ];
      commands = [
        "journalctl -u n8n -n 100"
        "curl -sS http://127.0.0.1:5678/healthz/readiness"
        "journalctl -u nginx -g n8n -n 50"
      ];
    };
    zammad = {
      summary = "zammad helpdesk: web, websocket and worker units, Elasticsearch for search";
      units = [
        "zammad-web.service"
        "zammad-websocket.service"
        "zammad-worker.service"
        "elasticsearch.service"
      ];
      probes = [
        "http://127.0.0.1:3001/"
        "http://127.0.0.1:9200/_cluster/health"
        "http://127.0.0.1:9200/_cat/health"
        "http://127.0.0.1:9200/_cat/allocation?v"
        "http://127.0.0.1:9200/_cat/indices?v&s=store.size:desc"
      ];
      commands = [
        "systemctl status 'zammad-*'"
        "journalctl -u zammad-worker -n 100"
        "curl -sS http://127.0.0.1:9200/_cluster/health"
      ];
      notes = "zammad's own health_check URL needs a token, so it is not a probe; the root page shows whether rails answers; the index's data is denied, its sizes are in _cat/allocation and _cat/indices";
    };
    nginx = {
      summary = "nginx: TLS front for every web service";
      units = [ "nginx.service" ];
      commands = [
        "journalctl -u nginx -n 100"
        "tail -n 100 /var/log/nginx/error.log"
        "openssl s_client -connect 127.0.0.1:443 -servername matrix.example.org -brief"
      ];
    };
    postgresql = {
      summary = "PostgreSQL for synapse, MAS, n8n and zammad (data is denied; activity needs a root report)";
      units = [ "postgresql.service" ];
      commands = [
        "journalctl -u postgresql -n 100"
        "ss -tn state established '( sport = :5432 )'"
        "report postgres-activity"
      ];
    };
    redis = {
      summary = "Redis instances";
      units = [ "redis-invidious.service" ];
      commands = [
        "systemctl status 'redis-*'"
        "journalctl -u 'redis-*' -n 50"
        "report redis-info"
      ];
    };
    acme = {
      summary = "ACME certificates (lego), one renew unit and timer per certificate";
      units = [
        "acme-matrix.example.org.service"
        "acme-matrix.example.org.timer"
      ];
      commands = [
        "systemctl list-timers 'acme-*'"
        "journalctl -u 'acme-*' -n 100"
        "openssl s_client -connect 127.0.0.1:443 -servername matrix.example.org -brief"
      ];
    };
  };
}
