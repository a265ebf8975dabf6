.PHONY: test build release demo deb
test:
	scripts/test
build:
	swift build
release:
	swift build -c release
# edge-runtime_VERSION_ARCH.deb in the repo root, from a release build with the Swift runtime linked in.
deb:
	packaging/build-deb.sh
