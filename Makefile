.PHONY: test build release demo
test:
	scripts/test
build:
	swift build
release:
	swift build -c release
