.PHONY: demo test build release deb

# Build a release, import SmolLM2, train two adapters, start the daemon and answer requests.
demo:
	scripts/demo

# The whole test suite (what CI runs).
test:
	scripts/test

build:
	swift build

release:
	swift build -c release

# edge-runtime_VERSION_ARCH.deb in the repo root, from a release build with the Swift runtime linked in.
deb:
	packaging/build-deb.sh
