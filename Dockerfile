# podcrypt image: controller and agent (`podcrypt controller`, `podcrypt agent`), built from this
# repository. Build: docker build -t podcrypt/podcrypt:$(node -p 'require("./package.json").version') .

# --- build: native addon (node-gyp) and TypeScript, both run by `npm ci` lifecycle scripts ---
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json binding.gyp tsconfig.json tsconfig.build.json ./
COPY native ./native
COPY src ./src
COPY test ./test
COPY bench ./bench
COPY bin ./bin
RUN npm ci && npm prune --omit=dev

# --- runtime: node, the compiled CLI, and the tools the data planes drive ---
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 nftables wireguard-tools kmod ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/podcrypt
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/build/Release ./build/Release
COPY --from=build /src/bin ./bin
ENV NODE_ENV=production
# /healthz, /readyz and /metrics: the controller on 9808, the agent on 9809 (host network).
EXPOSE 9808 9809
ENTRYPOINT ["/opt/podcrypt/bin/podcrypt"]
CMD ["--help"]
